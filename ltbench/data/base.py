"""The dataset interface every trainer and method uses, and its in-memory (tensor) implementation."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch

from .augment import normalize, random_crop_flip
from .samplers import class_balanced_indices, instance_indices

DATA_ROOT_ENV = "LTBENCH_DATA_ROOT"


FINGERPRINT_HEX = 16  # hex digits kept of the sha256: short enough for folder names, far from collisions


def fingerprint_parts(*parts: bytes | memoryview | np.ndarray | str) -> str:
    """Short sha256 over ``parts`` (each length-prefixed, so part boundaries cannot shift)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, str):
            p = p.encode()
        elif isinstance(p, np.ndarray):
            p = memoryview(np.ascontiguousarray(p)).cast("B")
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()[:FINGERPRINT_HEX]


def default_data_root() -> Path:
    """``$LTBENCH_DATA_ROOT`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_ROOT_ENV, "data"))


Batch = tuple[torch.Tensor, torch.Tensor]


class LTData(Protocol):
    """A long-tailed train set and a balanced test set, served as normalised float batches on a device."""

    name: str
    num_classes: int
    imbalance: int | None

    @property
    def train_labels(self) -> torch.Tensor: ...

    @property
    def test_labels(self) -> torch.Tensor: ...

    def class_counts(self) -> np.ndarray: ...

    def train_batches(self, batch_size: int, generator: torch.Generator, device: torch.device,
                      augment: bool = True, balanced: bool = False) -> Iterator[Batch]: ...

    def eval_batches(self, split: str, batch_size: int, device: torch.device) -> Iterator[Batch]: ...

    def fingerprint(self) -> str:
        """Short hash of the training data actually loaded (part of the stage-1 cache key)."""
        ...


class LabelsFromTensors:
    """The label accessors of ``LTData`` for datasets that hold ``train_y`` / ``test_y`` int64 tensors."""

    train_y: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def train_labels(self) -> torch.Tensor:
        return self.train_y

    @property
    def test_labels(self) -> torch.Tensor:
        return self.test_y

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.train_y.numpy(), minlength=self.num_classes)


@dataclass
class TensorLTData(LabelsFromTensors):
    """Images held as one uint8 [N, 3, H, W] tensor, moved to the device once; augmentation is batched tensor ops."""

    name: str
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    imbalance: int | None = None
    class_names: list[str] | None = None
    _on: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for what, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
                raise ValueError(f"{self.name}: {what} images must be uint8 [N, 3, H, W], "
                                 f"got {x.dtype} {tuple(x.shape)}")
            if len(x) != len(y):
                raise ValueError(f"{self.name}: {len(x)} {what} images but {len(y)} labels")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"{self.name}: {what} labels outside [0, {self.num_classes - 1}]")

    def fingerprint(self) -> str:
        """sha256 (16 hex digits) over the uint8 train images and their labels, computed once per object.

        The stage-1 cache is keyed by it, so a network trained on other pixels or labels under the same config (a
        data root that was wrong, then fixed) is never reused. ~0.1 s for 40 MB of CIFAR images.
        """
        fp = self.__dict__.get("_fingerprint")
        if fp is None:
            x = self.train_x.cpu().contiguous().numpy()
            fp = fingerprint_parts(f"tensor-lt/{self.num_classes}/{x.dtype}/{list(x.shape)}",
                                   x, self.train_y.cpu().to(torch.int64).contiguous().numpy())
            self.__dict__["_fingerprint"] = fp
        return fp

    def _device_copy(self, device: torch.device) -> dict[str, torch.Tensor]:
        key = str(device)
        if key not in self._on:
            self._on.clear()
            self._on[key] = {
                "train_x": self.train_x.to(device), "train_y": self.train_y.to(device),
                "test_x": self.test_x.to(device), "test_y": self.test_y.to(device),
                "mean": self.mean.to(device), "std": self.std.to(device),
            }
        return self._on[key]

    def train_batches(self, batch_size: int, generator: torch.Generator, device: torch.device,
                      augment: bool = True, balanced: bool = False) -> Iterator[Batch]:
        d = self._device_copy(device)
        n = len(self.train_y)
        idx = class_balanced_indices(self.train_y, n, generator) if balanced else instance_indices(n, generator)
        idx = idx.to(device)
        for s in range(0, n, batch_size):
            bi = idx[s:s + batch_size]
            x = d["train_x"][bi]
            if augment:
                x = random_crop_flip(x, generator)
            yield normalize(x, d["mean"], d["std"]), d["train_y"][bi]

    def eval_batches(self, split: str, batch_size: int, device: torch.device) -> Iterator[Batch]:
        d = self._device_copy(device)
        x, y = (d["test_x"], d["test_y"]) if split == "test" else (d["train_x"], d["train_y"])
        for s in range(0, len(y), batch_size):
            yield normalize(x[s:s + batch_size], d["mean"], d["std"]), y[s:s + batch_size]

    def subset_train(self, idx: np.ndarray, name_suffix: str = "") -> "TensorLTData":
        """A copy whose train set is ``train[idx]`` (used for held-out splits, e.g. choosing tau)."""
        t = torch.as_tensor(idx, dtype=torch.long)
        return TensorLTData(self.name + name_suffix, self.num_classes, self.train_x[t], self.train_y[t],
                            self.test_x, self.test_y, self.mean, self.std, self.imbalance, self.class_names)

    def with_test(self, x: torch.Tensor, y: torch.Tensor, name_suffix: str = "") -> "TensorLTData":
        """A copy that evaluates on (x, y) instead of the test set."""
        return TensorLTData(self.name + name_suffix, self.num_classes, self.train_x, self.train_y, x, y,
                            self.mean, self.std, self.imbalance, self.class_names)
