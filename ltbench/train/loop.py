"""The one training loop: per-step learning rate, optional bf16 autocast, a finite-loss check per epoch.

Stage 1 (images through the whole network) and stage 2 (a classifier on features) both call
``train_one_epoch`` with their own ``loss_fn``.
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterable

import torch

from ..errors import DivergedError

LossFn = Callable[[tuple], tuple[torch.Tensor, torch.Tensor, int]]  # batch -> (mean loss, #correct, batch size)


def autocast_for(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA only: the CPUs here have no native bf16 and run it ~2.7x slower."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(opt: torch.optim.Optimizer, batches: Iterable[tuple], loss_fn: LossFn,
                    lr_at: Callable[[float], float], epoch: int, steps_per_epoch: int,
                    device: torch.device, bf16: bool = False, what: str = "training") -> dict:
    """One pass over ``batches``; the lr is set before each step from the fractional epoch."""
    t0 = time.perf_counter()
    total = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    lr = 0.0
    for i, batch in enumerate(batches):
        lr = lr_at(epoch + i / steps_per_epoch)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        with autocast_for(device, bf16):
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
