"""M ResNet-32 networks of one shape as one "wide" network: grouped convolutions, per-network BN channels.

Why: a single CIFAR ResNet-32 at batch 128 cannot fill a big GPU (16-64 channels on 32x32-8x8 maps: the step is
bound by kernel launches, not arithmetic). Stacking M networks along the channel axis turns each of its ~100
small kernels into one kernel M times wider, with no cross-talk between networks:

* input: network m's batch on channels ``3m..3m+2`` of one ``[B, 3M, H, W]`` tensor (each network its own images);
* convolutions: ``groups=M``, so output channels of network m see only network m's input channels;
* BatchNorm: ``M*C`` channels; per-channel batch statistics over (B, H, W) are exactly network m's statistics;
* option-A shortcut: zero-padding per network (``[B, M, C, h, w]`` view);
* head: one batched matmul ``[M, B, F] x [M, F, K]``.

Every parameter and buffer keeps the name it has in ``Network`` with a leading ``M`` axis (``num_batches_tracked``
is shared: all networks take the same number of steps), so ``network_state(m)`` is network m's ordinary state
dict and checkpoints stay per network.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import Network


class StackedConv(nn.Module):
    def __init__(self, m: int, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.m, self.stride = m, stride
        self.weight = nn.Parameter(torch.empty(m, cout, cin, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, cout, cin = self.weight.shape[:3]
        return F.conv2d(x, self.weight.reshape(m * cout, cin, 3, 3), None, self.stride, 1, 1, m)


class StackedBN(nn.Module):
    """BatchNorm2d of M networks: ``M*C`` channels, momentum 0.1 and eps 1e-5 as ``nn.BatchNorm2d``."""

    def __init__(self, m: int, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(m, c))
        self.bias = nn.Parameter(torch.zeros(m, c))
        self.register_buffer("running_mean", torch.zeros(m, c))
        self.register_buffer("running_var", torch.ones(m, c))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        # reshape(-1) of the contiguous [M, C] buffers is a view: F.batch_norm updates them in place
        return F.batch_norm(x, self.running_mean.reshape(-1), self.running_var.reshape(-1), self.weight.reshape(-1),
                            self.bias.reshape(-1), self.training, 0.1, 1e-5)


def _pad_shortcut(x: torch.Tensor, m: int, planes: int) -> torch.Tensor:
    b, mc, h, w = x.shape
    x = x[:, :, ::2, ::2].reshape(b, m, mc // m, (h + 1) // 2, (w + 1) // 2)
    p = planes // 4
    return F.pad(x, (0, 0, 0, 0, p, p)).reshape(b, m * planes, (h + 1) // 2, (w + 1) // 2)


class StackedBlock(nn.Module):
    def __init__(self, m: int, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.m, self.planes = m, planes
        self.conv1 = StackedConv(m, in_planes, planes, stride)
        self.bn1 = StackedBN(m, planes)
        self.conv2 = StackedConv(m, planes, planes)
        self.bn2 = StackedBN(m, planes)
        self.pad = stride != 1 or in_planes != planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (_pad_shortcut(x, self.m, self.planes) if self.pad else x))


class StackedExtractor(nn.Module):
    def __init__(self, m: int, num_blocks=(5, 5, 5), widths=(16, 32, 64)) -> None:
        super().__init__()
        self.m = m
        self.conv1 = StackedConv(m, 3, widths[0])
        self.bn1 = StackedBN(m, widths[0])
        layers, in_planes = [], widths[0]
        for i, (n, w) in enumerate(zip(num_blocks, widths)):
            blocks = []
            for j in range(n):
                blocks.append(StackedBlock(m, in_planes, w, 2 if (i > 0 and j == 0) else 1))
                in_planes = w
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.num_features = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)  # [B, M*F]


class StackedHead(nn.Module):
    def __init__(self, m: int, f: int, k: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(m, k, f))
        self.bias = nn.Parameter(torch.empty(m, k))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        m, k, f = self.weight.shape
        z = z.reshape(z.shape[0], m, f).transpose(0, 1)  # [M, B, F]
        return torch.baddbmm(self.bias[:, None, :], z, self.weight.transpose(1, 2))  # [M, B, K]


class StackedResNet32(nn.Module):
    """M CIFAR ResNet-32 ``Network``s in one module. ``forward``: ``[B, 3M, H, W]`` -> logits ``[M, B, K]``."""

    def __init__(self, m: int, num_classes: int) -> None:
        super().__init__()
        self.m, self.num_classes = m, num_classes
        self.extractor = StackedExtractor(m)
        self.head = StackedHead(m, self.extractor.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.extractor(x))

    @classmethod
    def from_networks(cls, nets: list[Network]) -> "StackedResNet32":
        """Stack the parameters and buffers of ``nets`` (same architecture and class count) into one module."""
        wide = cls(len(nets), nets[0].num_classes)
        wide.load_network_states([n.state_dict() for n in nets])
        p = next(nets[0].parameters())
        return wide.to(p.device)

    def load_network_states(self, states: list[dict]) -> None:
        own = self.state_dict()
        if len(states) != self.m or set(states[0]) != set(own):
            raise ValueError("state dicts do not match this stacked network's architecture")
        with torch.no_grad():
            for k, t in own.items():
                if k.endswith("num_batches_tracked"):
                    t.copy_(states[0][k])
                else:
                    t.copy_(torch.stack([s[k].to(t.device, t.dtype) for s in states]))

    def network_state(self, i: int) -> dict[str, torch.Tensor]:
        """Network ``i``'s ``Network.state_dict()`` (own storage: a saved file holds only this network)."""
        return {k: (t.detach().clone() if t.dim() == 0 else t.detach()[i].clone())
                for k, t in self.state_dict().items()}

    def flat_params(self) -> torch.Tensor:
        """``[M, P]``: row i is ``swag.flat_params`` of network i (same parameter order as ``Network``)."""
        return torch.cat([p.detach().reshape(self.m, -1) for p in self.parameters()], 1)


def stackable(arch: str) -> bool:
    return arch == "resnet32"
