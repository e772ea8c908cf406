"""Learning-rate schedules, as a function of (fractional) epoch so they are exact per step."""
from __future__ import annotations

import math


def warmup_cosine(t: float, base_lr: float, epochs: float, warmup: float = 0.0, final_lr: float = 0.0) -> float:
    """Linear warm-up from 0 over ``warmup`` epochs, then cosine from ``base_lr`` to ``final_lr`` at ``epochs``."""
    if warmup > 0 and t < warmup:
        return base_lr * t / warmup
    horizon = max(epochs - warmup, 1e-12)
    p = min(max((t - warmup) / horizon, 0.0), 1.0)
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


def swa_schedule(t: float, base_lr: float, epochs: float, warmup: float, swa_start: float, swa_lr: float,
                 before=None) -> float:
    """The first author's SWA schedule: warm-up, cosine towards ``swa_lr``, constant ``swa_lr`` from ``swa_start``
    (``before``: another schedule for the epochs before ``swa_start``, a function of t)."""
    if t >= swa_start:
        return swa_lr
    return before(t) if before is not None else warmup_cosine(t, base_lr, epochs, warmup, swa_lr)


def warmup_step(t: float, base_lr: float, warmup: float, milestones: list[float], gamma: float) -> float:
    """LDAM-DRW's CIFAR schedule: warm-up by whole epochs (epoch e < ``warmup`` runs at base_lr (e + 1) / warmup,
    as its ``adjust_learning_rate``), then ``base_lr`` times ``gamma`` per milestone passed (x0.01 from epoch
    160, x0.0001 from epoch 180 of 200)."""
    if warmup > 0 and t < warmup:
        return base_lr * min(math.floor(t) + 1, warmup) / warmup
    return base_lr * gamma ** sum(t >= m for m in milestones)
