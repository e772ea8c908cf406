"""SGD over stacked parameters (leading axis = network) with one learning rate per network.

The update is ``torch.optim.SGD``'s (L2 weight decay added to the gradient, momentum buffer initialised with the
first gradient, Nesterov look-ahead, no dampening), applied to all M networks at once with a per-network lr: an
SGD network and an SWA network of one group follow different schedules. Momentum buffers convert to and from
each network's own ``torch.optim.SGD`` state dict, so checkpoints stay per network and resumable by stage 1.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .loop import sgd


class StackedSGD:
    def __init__(self, params: list[nn.Parameter], momentum: float, nesterov: bool, weight_decay: float) -> None:
        self.params = list(params)
        self.m = self.params[0].shape[0]
        self.momentum, self.nesterov, self.weight_decay = momentum, nesterov, weight_decay
        self.bufs: list[torch.Tensor] | None = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: torch.Tensor) -> None:
        """One update; ``lr``: ``[M]`` learning rates on the parameters' device."""
        ps = self.params
        grads = [p.grad for p in ps]
        if self.weight_decay != 0:
            grads = torch._foreach_add(grads, ps, alpha=self.weight_decay)
        if self.momentum != 0:
            if self.bufs is None:
                self.bufs = [g.clone() for g in grads]
            else:
                torch._foreach_mul_(self.bufs, self.momentum)
                torch._foreach_add_(self.bufs, grads)
            grads = torch._foreach_add(grads, self.bufs, alpha=self.momentum) if self.nesterov else self.bufs
        for p, g in zip(ps, grads):
            p.sub_(g * lr.view(-1, *([1] * (p.dim() - 1))))

    # ----------------------------------------------------------------------------------- per-network state

    def network_state_dict(self, i: int, template: nn.Module, cfg, lr: float) -> dict:
        """Network ``i``'s state as ``torch.optim.SGD(template.parameters()).state_dict()`` (stage 1's format)."""
        opt = sgd(template.parameters(), cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        if self.bufs is not None:
            for p, b in zip(template.parameters(), self.bufs):
                opt.state[p]["momentum_buffer"] = b[i].detach().clone()
        return opt.state_dict()

    def load_network_state_dicts(self, states: list[dict], templates: list[nn.Module], cfgs: list) -> None:
        """Inverse of ``network_state_dict`` for all M networks (from their stage-1 checkpoints)."""
        bufs_per_net = []
        for sd, t, cfg in zip(states, templates, cfgs):
            opt = sgd(t.parameters(), cfg)
            opt.load_state_dict(sd)
            bufs_per_net.append([opt.state[p].get("momentum_buffer") for p in t.parameters()])
        have = [all(b is not None for b in bs) for bs in bufs_per_net]
        if not any(have):
            self.bufs = None
            return
        if not all(have):
            raise ValueError("some networks of the group have momentum buffers and some do not")
        dev = self.params[0].device
        self.bufs = [torch.stack([bs[j].to(dev) for bs in bufs_per_net]) for j in range(len(self.params))]
