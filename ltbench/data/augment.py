"""Batched CIFAR augmentation as tensor ops (airbench-style): data stays on the device, no DataLoader.

Same distribution as torchvision's ``RandomCrop(32, padding=4)`` (zero fill) + ``RandomHorizontalFlip()``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """x: uint8 or float [B, C, H, W]. Each image gets its own crop offset in [0, 2*pad] and a flip with p=0.5."""
    b = x.shape[0]
    # draw on CPU with the (CPU) generator so the stream is identical on every device
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    return crop_flip_at(x, oy, ox, flip, pad)


def crop_flip_at(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor, pad: int = 4
                 ) -> torch.Tensor:
    """The deterministic part of ``random_crop_flip``: image i is cropped at (oy[i], ox[i]) of its zero-padded
    copy, then mirrored if flip[i]. One gather for the whole batch (separate so tests can pin the offsets)."""
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    oy, ox, flip = oy.to(dev), ox.to(dev), flip.to(dev)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
    cols = (ox[:, None] + torch.arange(w, device=dev))
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [B,C,H,W] -> float, (x/255 - mean) / std in one fused multiply-add."""
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    bias = (-mean / std).view(1, -1, 1, 1)
    return torch.addcmul(bias, x.float(), scale)
