"""Build a ``Network`` (extractor + linear head) by architecture name: ResNet-32 here, timm for the rest."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..errors import LtbenchError
from .resnet_cifar import resnet32_extractor


class Network(nn.Module):
    """h(x) = head(extractor(x)). Stage 2 methods replace or rescale ``head`` and keep ``extractor`` frozen."""

    def __init__(self, extractor: nn.Module, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = nn.Linear(num_features, num_classes)
        self.num_features = num_features
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.extractor(x))


def create_network(arch: str, num_classes: int) -> Network:
    """``resnet32`` (CIFAR), or any timm model name (e.g. ``resnet50``, ``resnext50_32x4d``), randomly initialised."""
    if arch == "resnet32":
        ext = resnet32_extractor()
        return Network(ext, ext.num_features, num_classes)
    try:
        import timm
    except ImportError as e:  # pragma: no cover
        raise LtbenchError(f"architecture {arch!r} needs timm: pip install timm ({e})") from None
    if not timm.is_model(arch):
        raise LtbenchError(f"unknown architecture {arch!r}: use resnet32 or a timm model name such as resnet50")
    ext = timm.create_model(arch, pretrained=False, num_classes=0)  # num_classes=0: pooled features, no head
    return Network(ext, ext.num_features, num_classes)
