"""The reference-style pipeline the benchmarks compare against: how the LDAM-DRW and classifier-balancing code train.

torchvision's CIFAR dataset (``Image.fromarray`` per item) + PIL transforms
(``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``) + ``DataLoader``, an fp32
NCHW eager ResNet-32, SGD. Built from the same in-memory uint8 arrays as ``TensorLTData`` so both pipelines see
the same images.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader


class InMemoryCIFAR(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR dataset class (its ``__getitem__``: ``Image.fromarray`` + transform) over given arrays."""

    def __init__(self, images_nchw: torch.Tensor, labels: torch.Tensor, transform=None) -> None:  # noqa: D107
        # skip CIFAR10.__init__ (it reads pickles from disk); set what __getitem__ / __len__ use
        torchvision.datasets.VisionDataset.__init__(self, root="", transform=transform)
        self.data = np.ascontiguousarray(images_nchw.permute(0, 2, 3, 1).numpy())  # N, H, W, C like torchvision
        self.targets = [int(t) for t in labels]
        self.train = True


def train_transform(mean, std) -> T.Compose:
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(list(map(float, mean)), list(map(float, std)))])


def test_transform(mean, std) -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(list(map(float, mean)), list(map(float, std)))])


def workers() -> int:
    """DataLoader workers for the reference (``LTBENCH_BENCH_WORKERS``, default 0: 2 shared cores here)."""
    return int(os.environ.get("LTBENCH_BENCH_WORKERS", "0"))


def train_loader(data, batch_size: int = 128, seed: int = 0, augment: bool = True) -> DataLoader:
    tf = train_transform(data.mean, data.std) if augment else test_transform(data.mean, data.std)
    ds = InMemoryCIFAR(data.train_x, data.train_y, tf)
    w = workers()
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=w, pin_memory=torch.cuda.is_available(),
                      persistent_workers=w > 0, generator=torch.Generator().manual_seed(seed))


def eval_loader(data, batch_size: int = 256) -> DataLoader:
    ds = InMemoryCIFAR(data.test_x, data.test_y, test_transform(data.mean, data.std))
    w = workers()
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=w, persistent_workers=w > 0)


def reference_step(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                   device: torch.device) -> torch.Tensor:
    """One fp32 NCHW eager step, as the reference code trains (no autocast, no channels_last, no compile)."""
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def forever(loader: DataLoader):
    while True:
        yield from loader
