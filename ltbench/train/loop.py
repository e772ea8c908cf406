"""The one training loop: per-step learning rate, optional bf16 autocast, a finite-loss check per epoch.

Stage 1 (images through the whole network) and stage 2 (a classifier on features) both call
``train_one_epoch`` with their own ``loss_fn``.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable

import torch

from ..config import PRECISIONS
from ..errors import DivergedError

LossFn = Callable[[tuple], tuple[torch.Tensor, torch.Tensor, int]]  # batch -> (mean loss, #correct, batch size)


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX). Without it bf16 is emulated and a
    ResNet-32 step runs ~2.7x *slower* than fp32 (measured on an AVX-512 Xeon without avx512_bf16)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA and on CPUs with native bf16, ``fp32`` elsewhere; explicit values pass through.

    Decided per machine (CPUs differ between sessions): a bf16-capable CPU trains ResNet-32
    1.6-1.8x faster in bf16 (docs/performance.md section 4a''').
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast_for(device: torch.device, precision: str | bool):
    """bf16 autocast on the device when ``precision`` resolves to bf16 (``True`` is accepted as ``bf16``)."""
    bf16 = precision is True or precision == "bf16"
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def epoch_progress(batches: Iterable[tuple], desc: str, total: int | None, quiet: bool) -> Iterable[tuple]:
    """``batches`` with live progress inside the epoch (a bar on a terminal; otherwise a plain line every 30 s and
    none at the end: the caller prints the epoch line). ``total`` counts images (the last tensor of a batch)."""
    from ..progress import track
    return track(batches, total=total, desc=desc, unit="img", weight=lambda b: len(b[-1]), quiet=quiet,
                 every_frac=1.0, closing_line=False)


def train_one_epoch(opt: torch.optim.Optimizer, batches: Iterable[tuple], loss_fn: LossFn,
                    lr_at: Callable[[float], float], epoch: int, steps_per_epoch: int,
                    device: torch.device, precision: str = "fp32", what: str = "training",
                    progress: str | None = None, progress_total: int | None = None) -> dict:
    """One pass over ``batches``; the lr is set before each step from the fractional epoch.

    ``progress``: a description to show live progress under (images/s, ETA); None shows nothing."""
    if progress is not None:
        batches = epoch_progress(batches, progress, progress_total, quiet=False)
    t0 = time.perf_counter()
    total = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    lr = 0.0
    for i, batch in enumerate(batches):
        lr = lr_at(epoch + i / steps_per_epoch)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        with autocast_for(device, precision):
            loss, n_correct, n = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.detach().double() * n
        correct += n_correct
        seen += n
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    mean_loss = float(total) / max(seen, 1)
    if not torch.isfinite(total):
        raise DivergedError(f"{what} diverged in epoch {epoch + 1}: the loss is {mean_loss}. Nothing was recorded "
                            "as a result; lower the learning rate or check the data.")
    return {"epoch": epoch + 1, "loss": mean_loss, "train_acc": 100.0 * float(correct) / max(seen, 1),
            "lr": lr, "images_per_s": seen / max(seconds, 1e-9), "seconds": seconds}


def cross_entropy_step(model: Callable, device: torch.device, channels_last: bool = False) -> LossFn:
    """A ``loss_fn`` for (x, y) batches through ``model`` with softmax cross-entropy."""
    def step(batch):
        x, y = batch
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        return loss, (logits.argmax(1) == y).sum(), len(y)
    return step


def sgd(params, cfg) -> torch.optim.SGD:
    """SGD with (Nesterov) momentum and L2 weight decay, as in every stage of the protocol."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)
