"""One benchmark run end to end: config -> data -> stage 1 (cached) -> method -> evaluator -> run store."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import file_lock
from .config import STAGE1_EXECUTION_OPTIONS, RunConfig
from .distributed import barrier, init_from_env, is_main, launched_by_torchrun
from .errors import DivergedError, LtbenchError
from .evaluate import evaluate
from .method import Stage2Context
from .registry import get_dataset, get_method
from .report.reliability import reliability_png
from .store import RunExistsError, check_writable, is_complete, run_dir, write_run
from .train.stage1 import cache_root, get_stage1, stage1_dir

Echo = Callable[[str], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LtbenchError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise LtbenchError(f"unknown --device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def set_determinism(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent.parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


_STARTED_AT_COMMIT = git_commit()  # the code this process runs, even if HEAD moves while it trains


def environment(device: torch.device) -> dict:
    return {
        "git_commit": _STARTED_AT_COMMIT, "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
    }


def stage2_workdir(cfg: RunConfig, stage1_folder: Path) -> Path:
    payload = json.dumps({"method": cfg.method, "options": cfg.method_options,
                          "stage2": cfg.stage2.__dict__, "eval": cfg.eval_batch_size}, sort_keys=True, default=str)
    h = hashlib.sha256(payload.encode()).hexdigest()[:12]
    return cache_root() / "stage2" / f"{stage1_folder.name}-{cfg.method}-{h}"


def _json_roundtrip(x):
    return json.loads(json.dumps(x, default=str))


def _schedule_text(stage1: dict, stage2: dict, reduced) -> str:
    return (f"stage 1 {stage1.get('epochs')} epochs, stage 2 {stage2.get('epochs')} epochs"
            + (", reduced" if reduced else ", full schedule"))


def finished_run_differs(cfg: RunConfig, out: Path) -> str | None:
    """Say how the finished run in ``out`` differs from ``cfg`` (schedule, hyperparameters, method options).

    A folder is named by dataset, extractor, method and seed only, so a reduced-schedule run and a full-schedule
    run of the same setting share it; skipping one because the other exists would silently keep the wrong
    numbers. Options that a newer version added (absent from the old config) are not compared.
    Returns None when the recorded run is the one ``cfg`` asks for, or when ``out`` holds no readable config.
    """
    try:
        old = json.loads((Path(out) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    new = _json_roundtrip(cfg.to_dict())
    diffs = []
    for part in ("stage1", "stage2"):
        a, b = old.get(part) or {}, new.get(part) or {}
        keys = sorted(k for k in set(a) & set(b) if k not in STAGE1_EXECUTION_OPTIONS and a[k] != b[k])
        diffs += [f"{part}.{k} {a[k]!r} there, {b[k]!r} asked" for k in keys]
    try:
        opts = _json_roundtrip(get_method(cfg.method)(**cfg.method_options).options)
    except Exception:  # noqa: BLE001 - invalid options are reported by execute() itself
        opts = {}
    a = old.get("method_options") or {}
    diffs += [f"option {k}={a[k]!r} there, {opts[k]!r} asked" for k in sorted(set(a) & set(opts)) if a[k] != opts[k]]
    if not diffs:
        return None
    return (f"{_schedule_text(old.get('stage1') or {}, old.get('stage2') or {}, old.get('reduced'))} there vs "
            f"{_schedule_text(new['stage1'], new['stage2'], new.get('reduced'))} asked; " + "; ".join(diffs[:4])
            + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else ""))


def execute(cfg: RunConfig, echo: Echo = print, force: bool = False) -> Path:
    """Run ``cfg`` and write its run folder; skip (and return it) when it is already complete.

    A complete folder that holds a *different* run of the same setting (e.g. a reduced schedule when the full
    one is asked for) is an error, not a skip: pass ``force`` to replace it or write to another results folder.
    """
    out = run_dir(cfg.results, cfg.dataset_tag, cfg.run_name, cfg.seed)
    if is_complete(out) and not force:
        differs = finished_run_differs(cfg, out)
        if differs:
            raise LtbenchError(f"{out} already holds a finished run with a different config ({differs}). "
                               "Re-run with --force to replace it, or pass --results DIR to keep both.")
        echo(f"skip: {out} is complete (use --force to run it again)")
        return out
    method_cls = get_method(cfg.method)
    method_cls.check_stage1(cfg.stage1_mode)
    method = method_cls(**cfg.method_options)
    spec = get_dataset(cfg.dataset)
    # torchrun: join the process group (NCCL on GPU, gloo on CPU); only rank 0 talks and writes
    device = init_from_env(cfg.device) if launched_by_torchrun() else resolve_device(cfg.device)
    if not is_main():
        echo = lambda s: None  # noqa: E731
    if is_main():
        check_writable(cfg.results)
    t0 = time.perf_counter()
    data = spec.load(cfg.data_root, cfg.imbalance, **cfg.data) if cfg.data else spec.load(cfg.data_root, cfg.imbalance)
    if cfg.imbalance is None and getattr(spec, "default_imbalance", None) is not None:
        raise LtbenchError("internal: imbalance must be resolved before execute()")
    set_determinism(cfg.seed, cfg.deterministic)
    echo(f"run {cfg.dataset_tag} {cfg.run_name} seed {cfg.seed}: {len(data.train_labels):,} train / "
         f"{len(data.test_labels):,} test images, {data.num_classes} classes, device {device}"
         + ("  [reduced schedule]" if cfg.reduced else ""))
    art = get_stage1(cfg, data, device, echo)
    ctx = Stage2Context(cfg=cfg, data=data, stage1=art, device=device,
                        generator=torch.Generator().manual_seed(cfg.seed + 1),
                        workdir=stage2_workdir(cfg, stage1_dir(cfg, data)), echo=echo)
    t1 = time.perf_counter()
    # Stage 2 must not depend on whether stage 1 was trained in this process or loaded from the cache (a resumed
    # run loads it), so the global RNG is reseeded here; the stage-2 lock makes two processes running the same
    # stage 2 take turns (the second resumes from, or reuses, the first's checkpoint) instead of racing on it.
    torch.manual_seed(cfg.seed + 2)
    with file_lock(ctx.workdir / ".lock") if is_main() else contextlib.nullcontext():
        predictor = method.fit(ctx)
    stage2_seconds = time.perf_counter() - t1
    arrays, metrics, log_probs = evaluate(predictor, data, device, cfg.eval_batch_size)
    bad = [k for k in ("confidence", "log_prob_true", "sq_prob_sum") if not np.all(np.isfinite(arrays[k]))]
    if bad:
        raise DivergedError(f"{cfg.run_name} diverged: the test predictions are not finite ({', '.join(bad)}). "
                            "Nothing was recorded as a result; lower the learning rate or check the data.")
    config = cfg.to_dict()
    config.update({
        "method_options": method.options, "method_info": ctx.info, "environment": environment(device),
        "wall_time_s": time.perf_counter() - t0, "stage1_train_time_s": art.seconds,
        "stage2_time_s": stage2_seconds, "stage1_cache": str(art.dir),
        "train_class_counts": [int(c) for c in data.class_counts()],
        "world_size": int(os.environ.get("WORLD_SIZE", 1)), "train_data_fingerprint": data.fingerprint(),
    })
    rows = [dict(r, stage=1) for r in art.log] + [dict(r, stage=2) for r in ctx.log]
    title = f"{cfg.dataset_tag} {cfg.run_name} seed{cfg.seed}" + (" (reduced)" if cfg.reduced else "")
    if is_main():
        try:
            write_run(out, config, metrics, arrays, rows, reliability_png(arrays, title),
                      logits=log_probs.numpy() if cfg.save_logits else None, replace=force)
        except RunExistsError as e:
            if not is_complete(out):
                raise
            echo(f"skip: {e}")  # a concurrent process recorded this run first: keep its folder, not an error
    barrier()
    return out
