"""One benchmark run end to end: config -> data -> stage 1 (cached) -> method -> evaluator -> run store."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .audit import stability_flags
from .checkpoint import file_lock
from .config import STAGE1_EXECUTION_OPTIONS, RunConfig
from .data.load import load_run_data
from .distributed import barrier, init_from_env, is_main, launched_by_torchrun
from .errors import DivergedError, LtbenchError
from .evaluate import FeaturePredictor, evaluate, test_log_probs
from .method import OracleCandidates, Stage2Context, TrainOnly
from .paths import run_dir_for, stage2_dir
from .registry import get_dataset, get_method
from .report.reliability import reliability_png
from .store import RunExistsError, as_recorded, check_writable, is_complete, write_run
from .train.stage1 import get_stage1

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


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), e.g. ``AMD EPYC``; CPUs differ between machines and sessions."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def environment(device: torch.device) -> dict:
    from .train.loop import cpu_has_native_bf16
    return {
        "git_commit": _STARTED_AT_COMMIT, "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu_model": cpu_model(), "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
    }


def _schedule_text(stage1: dict, stage2: dict, reduced) -> str:
    return (f"stage 1 {stage1.get('epochs')} epochs, stage 2 {stage2.get('epochs')} epochs"
            + (", reduced" if reduced else ", full schedule"))


# config.json fields that name the run: a folder whose config disagrees on any of them holds another run
RUN_IDENTITY = ("method", "dataset", "imbalance", "stage1_mode", "seed", "subset_seed")
# what a config written before a field existed means by its absence
_IDENTITY_DEFAULTS = {"subset_seed": 0}
# stage-1 fields added later, as runs recorded before them behaved (compared like recorded values)
_STAGE_DEFAULTS = {"stage1": {"lr_schedule": "cosine"}, "stage2": {"lr_schedule": "cosine", "warmup_epochs": 0}}
# [data] load options that change speed or checking, not the data (as in RunConfig.stage1_key)
_DATA_EXECUTION_OPTIONS = ("workers", "decode", "check_files")
_ABSENT = object()


def finished_data_differs(cfg: RunConfig, out: Path,
                          fingerprint: Callable[[RunConfig], str] | None = None) -> str | None:
    """How the training data of the finished run in ``out`` differs from what ``cfg`` loads now (None: the same,
    or the run recorded no fingerprint). The config alone does not identify the data: a run written from a wrong
    data root, since fixed, has this config but not this data, and must not be skipped as this run.
    ``fingerprint``: the data fingerprint of a config (default: load it), e.g. memoised over a grid's plan."""
    try:
        old = json.loads((Path(out) / "config.json").read_text()).get("train_data_fingerprint")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable configs are reported by finished_run_differs
    if not old:
        return None
    now = fingerprint(cfg) if fingerprint is not None else load_run_data(cfg).fingerprint()
    if now == old:
        return None
    return f"train_data_fingerprint {old[:16]} there, {now[:16]} in the data loaded now"


def finished_run_differs(cfg: RunConfig, out: Path) -> str | None:
    """Say how the finished run in ``out`` differs from ``cfg`` (run identity, schedule, hyperparameters, options).

    A finished run is recognised by its content, not by its files being there: the folder's ``config.json`` must
    name the same run (method, dataset, imbalance factor, extractor, seed) and record the same resolved
    configuration (stage-1 and stage-2 hyperparameters and schedule, method options, dataset load options).
    Environment and timing fields are not compared, nor options a newer version added (absent from the old
    config). A reduced-schedule and a full-schedule run of one setting share a folder, and a copied or
    concurrently written folder may hold another run altogether; skipping would report its numbers under the
    asked-for name. Returns None only when the recorded run is the one ``cfg`` asks for; an unreadable config is
    a difference.
    """
    try:
        old = json.loads((Path(out) / "config.json").read_text())
    except (OSError, ValueError) as e:
        return f"its config.json cannot be read ({type(e).__name__})"
    if not isinstance(old, dict):
        return "its config.json does not hold a run configuration"
    new = as_recorded(cfg.to_dict())
    ident = [f"{k} {old.get(k)!r} there, {new[k]!r} asked" if k in old else f"no {k} recorded, {new[k]!r} asked"
             for k in RUN_IDENTITY if old.get(k, _IDENTITY_DEFAULTS.get(k, _ABSENT)) != new[k]]
    if ident:
        return "another run: " + "; ".join(ident)
    diffs = []
    for part in ("stage1", "stage2"):
        a = {**_STAGE_DEFAULTS[part], **(old.get(part) or {})}
        b = new.get(part) or {}
        keys = sorted(k for k in set(a) & set(b) if k not in STAGE1_EXECUTION_OPTIONS and a[k] != b[k])
        diffs += [f"{part}.{k} {a[k]!r} there, {b[k]!r} asked" for k in keys]
    try:
        opts = as_recorded(get_method(cfg.method)(**cfg.method_options).options)
        legacy = dict(get_method(cfg.method).legacy_options)
    except Exception:  # noqa: BLE001 - invalid options are reported by execute() itself
        opts, legacy = {}, {}
    a = {**legacy, **(old.get("method_options") or {})}
    diffs += [f"option {k}={a[k]!r} there, {opts[k]!r} asked" for k in sorted(set(a) & set(opts)) if a[k] != opts[k]]
    if "data" in old:  # dataset load options (split lists...): absent from configs older than the [data] table
        a, b = old.get("data") or {}, new.get("data") or {}
        diffs += [f"data.{k} {a.get(k)!r} there, {b.get(k)!r} asked" for k in sorted(set(a) | set(b))
                  if k not in _DATA_EXECUTION_OPTIONS and a.get(k) != b.get(k)]
    if not diffs:
        return None
    there = _schedule_text(old.get("stage1") or {}, old.get("stage2") or {}, old.get("reduced"))
    asked = _schedule_text(new["stage1"], new["stage2"], new.get("reduced"))
    return ((f"{there} there vs {asked} asked; " if there != asked else "") + "; ".join(diffs[:4])
            + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else ""))


def _silent(s: str) -> None:
    """The echo of non-main DDP ranks: no lines, no live progress."""


_silent.quiet = True  # type: ignore[attr-defined]


def pick_oracle(oc: OracleCandidates, ctx: Stage2Context) -> torch.Tensor:
    """The candidate with the best test accuracy (the evaluator's job: methods never see test labels).
    ``ctx`` holds the full data; ``ctx.info`` gets the whole test sweep."""
    labels = ctx.data.test_labels.cpu()
    lps = {k: test_log_probs(p, ctx).cpu() for k, p in oc.candidates.items()}
    sweep = [{oc.param: k, "test_acc": 100.0 * float((lp.argmax(1) == labels).double().mean())}
             for k, lp in lps.items()]
    best = max(range(len(sweep)), key=lambda i: (sweep[i]["test_acc"], -i))
    chosen = list(lps)[best]
    ctx.info.update({"oracle": True, "oracle_param": oc.param, oc.param: chosen, "oracle_sweep": sweep})
    ctx.echo(f"oracle: {oc.param} = {chosen} chosen on the TEST set (test acc {sweep[best]['test_acc']:.2f}%)")
    return lps[chosen]


def apply_predictor(predictor, ctx: Stage2Context):
    """A method's output made ready for ``evaluate``: image predictors pass through; feature predictors and
    oracle candidates are applied to the test split here (``ctx`` holds the full data)."""
    if isinstance(predictor, OracleCandidates):
        return pick_oracle(predictor, ctx)
    if isinstance(predictor, FeaturePredictor):
        return test_log_probs(predictor, ctx)
    return predictor


def execute(cfg: RunConfig, echo: Echo = print, force: bool = False) -> Path:
    """Run ``cfg`` and write its run folder; skip (and return it) when it is already complete.

    A complete folder that holds a *different* run of the same setting (e.g. a reduced schedule when the full
    one is asked for) is an error, not a skip: pass ``force`` to replace it or write to another results folder.
    """
    out = run_dir_for(cfg)
    if is_complete(out) and not force:
        differs = finished_run_differs(cfg, out)
        if differs:
            raise LtbenchError(f"{out} already holds a finished run with a different config ({differs}). "
                               "Re-run with --force to replace it, or pass --results DIR to keep both.")
        differs = finished_data_differs(cfg, out)
        if differs:
            raise LtbenchError(f"{out} already holds a finished run of this config trained on other data ({differs}). "
                               "Re-run with --force to replace it with a run on this data, or pass --results DIR "
                               "to keep both.")
        echo(f"skip: {out} is complete (use --force to run it again)")
        return out
    method_cls = get_method(cfg.method)
    method_cls.check_stage1(cfg.stage1_mode)
    method = method_cls(**cfg.method_options)
    get_dataset(cfg.dataset)  # an unknown name fails before the process group is joined
    # torchrun: join the process group (NCCL on GPU, gloo on CPU); only rank 0 talks and writes
    device = init_from_env(cfg.device) if launched_by_torchrun() else resolve_device(cfg.device)
    if not is_main():
        echo = _silent
    t0 = time.perf_counter()
    data = load_run_data(cfg)  # before the write probe: a data error leaves no runs/ folder in a new store
    if is_main():
        check_writable(cfg.results)
    if cfg.imbalance is None and getattr(get_dataset(cfg.dataset), "default_imbalance", None) is not None:
        raise LtbenchError("internal: imbalance must be resolved before execute()")
    set_determinism(cfg.seed, cfg.deterministic)
    echo(f"run {cfg.dataset_tag} {cfg.run_name} seed {cfg.seed}: {len(data.train_labels):,} train / "
         f"{len(data.test_labels):,} test images, {data.num_classes} classes, device {device}"
         + ("  [reduced schedule]" if cfg.reduced else ""))
    art = get_stage1(cfg, data, device, echo)
    ctx = Stage2Context(cfg=cfg, data=TrainOnly(data), stage1=art, device=device,
                        generator=torch.Generator().manual_seed(cfg.seed + 1),
                        workdir=stage2_dir(cfg, art.dir), echo=echo)
    t1 = time.perf_counter()
    # Stage 2 must not depend on whether stage 1 was trained in this process or loaded from the cache (a resumed
    # run loads it), so the global RNG is reseeded here; the stage-2 lock makes two processes running the same
    # stage 2 take turns (the second resumes from, or reuses, the first's checkpoint) instead of racing on it.
    torch.manual_seed(cfg.seed + 2)
    with file_lock(ctx.workdir / ".lock") if is_main() else contextlib.nullcontext():
        predictor = method.fit(ctx)
    stage2_seconds = time.perf_counter() - t1
    predictor = apply_predictor(predictor, dataclasses.replace(ctx, data=data))  # the evaluator: full data
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
        "swag_snapshots": art.swag.n if art.swag is not None else 0,
        "train_class_counts": [int(c) for c in data.class_counts()],
        "world_size": int(os.environ.get("WORLD_SIZE", 1)), "train_data_fingerprint": data.fingerprint(),
        "unstable": stability_flags([dict(r, stage=2) for r in ctx.log], metrics, data.num_classes),
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
            # a concurrent process recorded a run in this folder first: keep its folder; it is this run only if its
            # config is this one's, otherwise say so (never print the other run's numbers under this name)
            differs = finished_run_differs(cfg, out)
            if differs:
                raise LtbenchError(f"{out} was written by another process while this run was running, and it holds "
                                   f"a run with a different config ({differs}); nothing was overwritten and this "
                                   "run's results were not recorded. Re-run with --force to replace it, or pass "
                                   "--results DIR to keep both.") from None
            echo(f"skip: {e}")
    barrier()
    return out
