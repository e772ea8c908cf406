"""Index samplers for one epoch: instance-balanced (a shuffle) and class-balanced (Kang et al.'s cRT)."""
from __future__ import annotations

import torch


def instance_indices(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of the training set: every image once per epoch."""
    return torch.randperm(n, generator=generator)


def class_balanced_indices(labels: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` draws, each picking a class uniformly and then an image of that class uniformly.

    An epoch of class-balanced sampling keeps the length of an instance-balanced epoch (``n`` = train size),
    as cRT / LWS / MiSLAS do. Classes without training images are never drawn.
    """
    labels = labels.cpu()
    classes = torch.unique(labels)
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)[classes]
    starts = torch.cumsum(counts, 0) - counts
    cls = torch.randint(len(classes), (n,), generator=generator)
    offs = (torch.rand(n, generator=generator, dtype=torch.float64) * counts[cls]).long()
    offs = torch.minimum(offs, counts[cls] - 1)
    return order[starts[cls] + offs]
