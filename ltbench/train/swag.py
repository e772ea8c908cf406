"""SWA averaging and SWAG moments (Maddox et al. 2019) over a network's parameters, collected in one pass.

``Swag.collect(net)`` is called once per epoch after the SWA start. Its running mean *is* the SWA average, so
one object serves SWA, SWAG and SWA + SRepr. Moments are kept in float64 (the second moment minus the squared
mean cancels badly in float32); the deviation columns in float32.
"""
from __future__ import annotations

import copy
from typing import Iterable

import torch
import torch.nn as nn
from torch.optim.swa_utils import update_bn

VAR_CLAMP = 1e-30
LOWRANK_NORMS = ("max_rank", "kept")
MIN_SWAG_SNAPSHOTS = 2  # fewer: the variance is zero, every "sample" is the SWA mean


def flat_params(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def load_flat_params(net: nn.Module, vec: torch.Tensor) -> None:
    i = 0
    with torch.no_grad():
        for p in net.parameters():
            n = p.numel()
            p.copy_(vec[i:i + n].view_as(p).to(p.dtype))
            i += n


class Swag:
    """First and second moments plus the last ``rank`` deviation columns of a sequence of weight vectors."""

    def __init__(self, num_params: int, rank: int = 20, device: torch.device | str = "cpu") -> None:
        self.rank = rank
        self.n = 0
        self.mean = torch.zeros(num_params, dtype=torch.float64, device=device)
        self.sq_mean = torch.zeros(num_params, dtype=torch.float64, device=device)
        self.dev = torch.zeros(0, num_params, dtype=torch.float32, device=device)  # rows: last K deviations

    @classmethod
    def for_network(cls, net: nn.Module, rank: int = 20) -> "Swag":
        p = next(net.parameters())
        return cls(sum(q.numel() for q in net.parameters()), rank, p.device)

    def collect_vector(self, w: torch.Tensor) -> None:
        w = w.to(self.mean.device, torch.float64)
        self.n += 1
        self.mean += (w - self.mean) / self.n
        self.sq_mean += (w * w - self.sq_mean) / self.n
        if self.rank > 0:
            # deviation from the running mean *after* including w, as the reference SWAG code does
            col = (w - self.mean).float()[None]
            self.dev = torch.cat([self.dev, col])[-self.rank:]

    def collect(self, net: nn.Module) -> None:
        self.collect_vector(flat_params(net))

    @property
    def variance(self) -> torch.Tensor:
        return torch.clamp(self.sq_mean - self.mean ** 2, min=VAR_CLAMP)

    def lowrank_divisor(self, lowrank_norm: str = "max_rank") -> float | None:
        """sqrt of the D D^T normaliser: K - 1 with K the maximum rank (``max_rank``: the reference
        wjmaddox/swa_gaussian, whatever the number of columns kept) or k - 1 with k the columns kept (``kept``).
        None when there is no low-rank term (fewer than two columns, or K < 2)."""
        k = self.dev.shape[0]
        if lowrank_norm not in LOWRANK_NORMS:
            raise ValueError(f"lowrank_norm must be one of {LOWRANK_NORMS}, got {lowrank_norm!r}")
        denom = (self.rank if lowrank_norm == "max_rank" else k) - 1
        return denom ** 0.5 if k > 1 and denom > 0 else None

    def covariance(self, diag_only: bool = False, lowrank_norm: str = "max_rank") -> torch.Tensor:
        """The dense SWAG covariance Sigma_diag + D D^T / (K - 1) (for tests on small models only)."""
        cov = torch.diag(self.variance)
        div = self.lowrank_divisor(lowrank_norm)
        if not diag_only and div is not None:
            d = self.dev.double()
            cov = cov + d.T @ d / div ** 2
        return cov

    def sample(self, scale: float = 0.5, generator: torch.Generator | None = None, diag_only: bool = False,
               mask: torch.Tensor | None = None, lowrank_norm: str = "max_rank") -> torch.Tensor:
        """theta = mean + sqrt(scale) * (Sigma_diag^1/2 z1 + D z2 / sqrt(K-1)); only entries where ``mask``."""
        if self.n == 0:
            raise RuntimeError("SWAG has no snapshots; was stage 1 run with --stage1 swa?")
        z1 = torch.randn(self.mean.shape, generator=generator, dtype=torch.float64).to(self.mean.device)
        noise = self.variance.sqrt() * z1
        k = self.dev.shape[0]
        div = self.lowrank_divisor(lowrank_norm)
        if not diag_only and div is not None:
            z2 = torch.randn(k, generator=generator, dtype=torch.float64).to(self.mean.device)
            noise = noise + (self.dev.double().T @ z2) / div
        noise = noise * scale ** 0.5
        if mask is not None:
            noise = noise * mask.to(noise.device, noise.dtype)
        return self.mean + noise

    def state_dict(self) -> dict:
        return {"rank": self.rank, "n": self.n, "mean": self.mean, "sq_mean": self.sq_mean, "dev": self.dev}

    @classmethod
    def from_state_dict(cls, sd: dict, device: torch.device | str | None = None) -> "Swag":
        s = cls(sd["mean"].numel(), sd["rank"], device or sd["mean"].device)
        s.n = int(sd["n"])
        s.mean = sd["mean"].to(s.mean.device)
        s.sq_mean = sd["sq_mean"].to(s.mean.device)
        s.dev = sd["dev"].to(s.mean.device)
        return s


def prefix_mask(net: nn.Module, prefix: str = "extractor.") -> torch.Tensor:
    """1 for the parameters whose name starts with ``prefix`` (SWAG perturbs the feature extractor only)."""
    return torch.cat([torch.full((p.numel(),), float(n.startswith(prefix))) for n, p in net.named_parameters()])


@torch.no_grad()
def network_with_weights(template: nn.Module, vec: torch.Tensor, bn_batches: Iterable | None) -> nn.Module:
    """A copy of ``template`` carrying the weights ``vec``, with BN statistics recomputed on ``bn_batches``."""
    net = copy.deepcopy(template)
    load_flat_params(net, vec)
    if bn_batches is not None:
        from ..distributed import average_bn_stats
        seen = [0]

        def counted():
            for b in bn_batches:
                seen[0] += 1
                yield b
        update_bn(counted(), net)  # resets running stats, cumulative average over one pass in train mode
        average_bn_stats(net, seen[0], count_batches=True)  # DDP: batch-weighted mean over ranks; else no-op
    net.eval()
    return net
