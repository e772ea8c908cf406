"""Helpers for the reliability tests: a tiny preset, `bench.py run` in a subprocess, results-store snapshots."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TINY_PRESET = """\
# reliability tests: a few seconds per run on 2 CPU cores
[stage1]
arch = "resnet32"
epochs = {epochs}
batch_size = 64
lr = 0.05
warmup_epochs = 1
swa_start = {swa_start}
swa_lr = 0.02
swag_rank = 2
[stage2]
epochs = {stage2_epochs}
batch_size = 64
[eval]
batch_size = 256
"""
# options that keep SWAG-pool methods small (2 sampled extractors)
SMALL_POOL = {"swag": ["pool_size=2", "samples_per_step=2"], "srepr": ["pool_size=2", "samples_per_step=2"]}
TIMING_KEYS = {"seconds", "images_per_s"}


def write_preset(path: Path, epochs: int = 3, stage2_epochs: int = 2, swa_start: int | None = None) -> Path:
    swa_start = max(epochs - 2, 1) if swa_start is None else swa_start
    path.write_text(TINY_PRESET.format(epochs=epochs, stage2_epochs=stage2_epochs, swa_start=swa_start))
    return path


def run_args(method: str, preset: Path, results: Path, seed: int = 0, dataset: str = "cifar10-lt-tiny",
             extra: list[str] | None = None) -> list[str]:
    """`bench.py run` arguments for a deterministic CPU run of ``method`` (``--stage1 swa`` where it needs it)."""
    from ltbench.registry import get_method
    stage1 = "swa" if method in get_method_names_needing_swag() else "sgd"
    args = [sys.executable, str(REPO / "bench.py"), "run", "--method", method, "--dataset", dataset,
            "--stage1", stage1, "--seed", str(seed), "--preset", str(preset), "--results", str(results),
            "--device", "cpu", "--deterministic"]
    for o in SMALL_POOL.get(method, []):
        if o.split("=")[0] in get_method(method).defaults:
            args += ["--option", o]
    return args + (extra or [])


def get_method_names_needing_swag() -> set[str]:
    from ltbench.registry import get_method, method_names
    return {m for m in method_names() if get_method(m).requires_swag}


def env_with_cache(cache: Path) -> dict[str, str]:
    """Environment of a test subprocess: its own stage-1 cache, offline, one CPU thread.

    One thread: on a loaded machine OpenMP threads that wait on each other in every op make a run 3-4x slower, and
    CPU results depend on the thread count, so fixing it also makes every subprocess comparable.
    """
    env = dict(os.environ, LTBENCH_CACHE=str(cache), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_bench(args: list[str], cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env_with_cache(cache), capture_output=True, text=True,
                          timeout=timeout)


def run_folder(results: Path, method: str, seed: int = 0, dataset: str = "cifar10-lt-tiny") -> Path:
    stage1 = "swa" if method in get_method_names_needing_swag() else "sgd"
    return results / "runs" / dataset / f"{stage1}-{method}" / f"seed{seed}"


def outcome(d: Path) -> dict:
    """What a run produced that must not depend on interruptions: metrics, prediction arrays, log minus timings."""
    with np.load(d / "predictions.npz") as z:
        arrays = {k: z[k].tobytes() for k in z.files}
    log = [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
           for line in (d / "log.jsonl").read_text().splitlines()]
    cfg = json.loads((d / "config.json").read_text())
    return {"metrics": json.loads((d / "metrics.json").read_text()), "arrays": arrays, "log": log,
            "method_info": cfg.get("method_info")}


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file (and '<dir>' for every folder) under ``root``."""
    out = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out
