"""Shared setup of the benchmarks: device, data (real CIFAR-100-LT IF100 or random data of the same shape), steps."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ltbench.data.base import TensorLTData

SHARED_DATA = Path(os.environ.get("LTBENCH_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"


def result_path(name: str, record: bool = False, env: dict | None = None) -> Path:
    """Where a benchmark writes its JSON ``name``: $LTBENCH_BENCH_OUT when set; else the committed benchmarks/results/
    with ``record`` (pytest ``--bench-record``: a measurement meant for git); else the git-ignored
    outputs/benchmarks/ of the repository, whatever the working directory, so a benchmark never leaves untracked
    files in the tree (the rule of conftest.ratio_path)."""
    env = os.environ if env is None else env
    if env.get("LTBENCH_BENCH_OUT"):
        return Path(env["LTBENCH_BENCH_OUT"])
    here = Path(__file__).resolve().parent
    return here / "results" / name if record else here.parent / "outputs" / "benchmarks" / name


def bench_device() -> torch.device:
    name = os.environ.get("LTBENCH_BENCH_DEVICE", "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def steps() -> int:
    """Training steps per timed round (``LTBENCH_BENCH_STEPS``; default 6 on CPU, 50 on CUDA)."""
    return int(os.environ.get("LTBENCH_BENCH_STEPS", "50" if bench_device().type == "cuda" else "6"))


def rounds() -> int:
    return int(os.environ.get("LTBENCH_BENCH_ROUNDS", "3"))


def load_data() -> tuple[TensorLTData, str]:
    """Real CIFAR-100-LT IF100 when ../shared/data has it, else random uint8 images of the same shape."""
    try:
        from ltbench.registry import get_dataset
        return get_dataset("cifar100-lt").load(SHARED_DATA, 100), "cifar100-lt-if100 (real)"
    except Exception:  # noqa: BLE001 - any missing/corrupt data: fall back to synthetic data
        g = torch.Generator().manual_seed(0)
        n_tr, n_te = 10847, 10000
        return TensorLTData(
            "synthetic", 100,
            torch.randint(0, 256, (n_tr, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 100, (n_tr,), generator=g),
            torch.randint(0, 256, (n_te, 3, 32, 32), dtype=torch.uint8, generator=g),
            torch.randint(0, 100, (n_te,), generator=g),
            torch.tensor([0.5071, 0.4865, 0.4409]), torch.tensor([0.2673, 0.2564, 0.2762]), 100,
        ), "synthetic uint8, CIFAR-100-LT IF100 shape"


def use_compile() -> bool:
    """``LTBENCH_BENCH_COMPILE=1``: compile our model (compile time is excluded by the warm-up round)."""
    return os.environ.get("LTBENCH_BENCH_COMPILE", "0") == "1"
