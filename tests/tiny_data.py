"""Small CPU-cheap training data for tests that run a real stage 1."""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from ltbench.data.base import TensorLTData


def small(data, n: int, stride: int = 4) -> TensorLTData:
    """``n`` train images of ``data``, subsampled to 8x8 pixels: ResNet-32 runs on any size (its maps become 8, 4,
    2 pixels wide) and float64 convolutions on a CPU are slow; the arithmetic compared is the same."""
    idx = torch.as_tensor(np.random.RandomState(0).permutation(len(data.train_labels))[:n])
    return TensorLTData(data.name + "-small", data.num_classes,
                        data.train_x[idx][:, :, ::stride, ::stride].contiguous(), data.train_y[idx],
                        data.test_x[:, :, ::stride, ::stride].contiguous(), data.test_y, data.mean,
                        data.std, data.imbalance)


@contextlib.contextmanager
def float64_pipeline() -> Iterator[None]:
    """Networks (the default dtype) and input batches (the data pipeline's ``normalize``) in float64, where a
    stacked network and its members trained alone are the same arithmetic up to summation order
    (tests/test_batched.py, tests/batched_child.py); restored on exit."""
    import ltbench.data.base as data_base

    real, old = data_base.normalize, torch.get_default_dtype()
    data_base.normalize = lambda x, mean, std: real(x, mean, std).double()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        data_base.normalize = real
        torch.set_default_dtype(old)
