"""Classifier heads used by stage-2 methods: a freshly initialised linear layer, LWS scaling, tau-normalisation."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def fresh_linear(in_features: int, num_classes: int, generator: torch.Generator) -> nn.Linear:
    """A re-initialised linear classifier (PyTorch's default init, drawn from ``generator`` for reproducibility)."""
    head = nn.Linear(in_features, num_classes)
    bound = 1.0 / math.sqrt(in_features)
    with torch.no_grad():
        head.weight.copy_(torch.empty_like(head.weight).uniform_(-bound, bound, generator=generator))
        head.bias.copy_(torch.empty_like(head.bias).uniform_(-bound, bound, generator=generator))
    return head


class ScaledLinear(nn.Module):
    """LWS: logits_k = s_k * (w_k . z + b_k) with W, b frozen and one learnable scale per class (init 1)."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.weight = nn.Parameter(base.weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(base.bias.detach().clone(), requires_grad=False)
        self.scales = nn.Parameter(torch.ones(base.out_features, device=base.weight.device))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scales * nn.functional.linear(z, self.weight, self.bias)


def tau_normalized_logits(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tau: float) -> torch.Tensor:
    """logits_k = z . w_k / ||w_k||^tau (+ b_k); tau = 0 is the original classifier."""
    norms = weight.norm(dim=1).clamp_min(1e-12)
    out = z @ (weight / norms[:, None] ** tau).T
    return out + bias if bias is not None else out
