"""Stage-2 classifier training on cached features, with a checkpoint per epoch so a killed run resumes.

Used by cRT, LWS, SWAG and SRepr: they differ only in the trainable module and the loss on a batch of indices.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..checkpoint import atomic_torch_save, load_checkpoint
from ..data.samplers import class_balanced_indices, instance_indices
from .loop import sgd, train_one_epoch
from .schedules import warmup_cosine, warmup_step

# idx (a batch of training indices on the device) -> (mean loss, #correct, batch size)
BatchLoss = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, int]]


def ce_on_features(head: nn.Module, z: torch.Tensor, y: torch.Tensor) -> BatchLoss:
    """Cross-entropy of ``head`` on the cached features ``z`` (the cRT / LWS stage-2 loss)."""
    def loss(idx: torch.Tensor):
        logits = head(z[idx])
        return nn.functional.cross_entropy(logits, y[idx]), (logits.argmax(1) == y[idx]).sum(), len(idx)
    return loss


def index_batches(labels: torch.Tensor, batch_size: int, generator: torch.Generator, balanced: bool):
    n = len(labels)
    idx = class_balanced_indices(labels, n, generator) if balanced else instance_indices(n, generator)
    idx = idx.to(labels.device)
    for s in range(0, n, batch_size):
        yield (idx[s:s + batch_size],)


def head_on_frozen_extractor(head: nn.Module, extractor: nn.Module, bn: str) -> Callable[[tuple], tuple]:
    """A loss on (augmented image, label) batches: features from the frozen ``extractor``, CE of ``head``.

    This is classifier-balancing's stage 2 (Kang et al. 2020, ``run_networks.py``): the backbone's parameters are
    frozen but every network is put in ``train()`` mode, so with ``bn='train'`` the backbone's BatchNorm layers
    normalise with batch statistics and their running statistics are re-estimated on the class-balanced,
    augmented batches (the test features then use those statistics). ``bn='eval'`` keeps the stage-1 statistics.
    No gradient reaches the extractor.
    """
    if bn not in ("train", "eval"):
        raise ValueError(f"bn must be 'train' or 'eval', got {bn!r}")

    def loss(batch: tuple):
        x, y = batch
        extractor.train(bn == "train")
        with torch.no_grad():
            z = extractor(x).float()
        logits = head(z)
        return nn.functional.cross_entropy(logits, y), (logits.argmax(1) == y).sum(), len(y)
    return loss


def head_on_finetuned_extractor(head: nn.Module, extractor: nn.Module) -> Callable[[tuple], tuple]:
    """A loss on (augmented image, label) batches that trains the extractor too (``backbone='finetune'``).

    This is not classifier-balancing, which freezes the backbone; it is what BagofTricks-LT's stored cRT and LWS
    configs run, whose ``BACKBONE.FREEZE`` is left at its default ``False``, so class-balanced re-training updates
    the whole network. Offered only to measure that reading; BN is in train mode, as in any training pass.
    """
    def loss(batch: tuple):
        x, y = batch
        extractor.train()
        logits = head(extractor(x)).float()  # under bf16 autocast the head's output is bf16: CE in fp32
        return nn.functional.cross_entropy(logits, y), (logits.argmax(1) == y).sum(), len(y)
    return loss


def stage2_lr(cfg) -> Callable[[float], float]:
    """The stage-2 learning rate at fractional epoch t: cosine to 0 (default, with an optional linear warm-up) or
    the step schedule (whole-epoch warm-up, then x lr_gamma per milestone), as ``Stage2Config`` says."""
    if cfg.lr_schedule == "step":
        return lambda t: warmup_step(t, cfg.lr, cfg.warmup_epochs, cfg.lr_milestones, cfg.lr_gamma)
    return lambda t: warmup_cosine(t, cfg.lr, cfg.epochs, cfg.warmup_epochs)


def train_head(module: nn.Module, params, labels: torch.Tensor, batch_loss: BatchLoss, ctx,
               balanced: bool = True, tag: str = "head", image_batches: bool = False,
               precision: str = "fp32") -> nn.Module:
    """Train ``params`` of ``module`` for ``ctx.cfg.stage2.epochs`` epochs (lr from ``stage2_lr``: cosine to 0 by
    default; SGD as in stage 1).

    By default a batch is a tensor of training indices into cached features (``batch_loss(idx)``); with
    ``image_batches`` it is a freshly augmented (x, y) batch of the training images, class-balanced when
    ``balanced`` (``batch_loss((x, y))``). The per-epoch checkpoint (all of ``module``'s state, so BN statistics
    a stage-2 pass re-estimates are kept too) lives in ``ctx.workdir``; rows are appended to ``ctx.log``.
    ``precision`` is fp32 for every classifier stage 2; a pass that trains the extractor too runs in stage 1's.
    """
    cfg = ctx.cfg.stage2
    opt = sgd(params, cfg)
    gen = ctx.generator
    ck_path: Path = ctx.workdir / f"{tag}-ckpt.pt"
    start = 0
    ck = load_checkpoint(ck_path)
    if ck is not None:
        module.load_state_dict(ck["module"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        ctx.log[:] = ck["log"]
        start = ck["epoch"]
        ctx.echo(f"stage 2: resuming {tag} from epoch {start}/{cfg.epochs}")
    steps = (len(labels) + cfg.batch_size - 1) // cfg.batch_size
    lr_at = stage2_lr(cfg)
    step = batch_loss if image_batches else (lambda b: batch_loss(b[0]))  # noqa: E731
    for epoch in range(start, cfg.epochs):
        module.train()
        batches = (ctx.data.train_batches(cfg.batch_size, gen, ctx.device, augment=True, balanced=balanced)
                   if image_batches else index_batches(labels, cfg.batch_size, gen, balanced))
        row = train_one_epoch(opt, batches, step, lr_at, epoch,
                              steps, ctx.device, precision=precision, what=f"stage 2 ({tag})",
                              progress=None if getattr(ctx.echo, "quiet", False) else
                              f"stage 2 [{tag}] {epoch + 1}/{cfg.epochs}", progress_total=len(labels))
        ctx.log.append(row)
        atomic_torch_save(ck_path, {"module": module.state_dict(), "optimizer": opt.state_dict(),
                                    "generator": gen.get_state(), "log": list(ctx.log), "epoch": epoch + 1})
        ctx.echo(f"stage 2 [{tag}] epoch {epoch + 1}/{cfg.epochs}  loss {row['loss']:.4f}  "
                 f"train acc {row['train_acc']:.1f}%  lr {row['lr']:.4f}")  # after the save, as in stage 1
    module.eval()
    return module
