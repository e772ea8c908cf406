"""Validate run folders: schema, metrics recomputed from ``predictions.npz``, config consistent with the path.

``check_run`` is what ``bench.py results check`` runs and what the tables and the leaderboard consult before
using a run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .metrics import compute_metrics
from .store import PREDICTION_KEYS

METRIC_KEYS = ("acc", "acc_many", "acc_medium", "acc_few", "nll", "ece", "brier", "n_train", "n_test")
CONFIG_KEYS = ("method", "dataset", "imbalance", "stage1_mode", "seed", "reduced", "stage1", "stage2",
               "train_class_counts")


def _close(a, b, tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def check_run(d: Path, tol: float = 1e-6) -> list[str]:
    """Problems with run folder ``d`` (an empty list means it is sound)."""
    d = Path(d)
    problems: list[str] = []
    for f in ("config.json", "metrics.json", "predictions.npz", "log.jsonl"):
        if not (d / f).is_file():
            problems.append(f"missing {f}")
    if problems:
        return problems
    try:
        config = json.loads((d / "config.json").read_text())
        metrics = json.loads((d / "metrics.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return [f"unreadable json: {e}"]
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        return ["config.json and metrics.json must each hold one JSON object"]
    try:
        for no, line in enumerate((d / "log.jsonl").read_text().splitlines(), 1):
            if line.strip():
                json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problems.append(f"log.jsonl line {no} is not JSON ({e})")
    problems += [f"config.json lacks {k!r}" for k in CONFIG_KEYS if k not in config]
    problems += [f"metrics.json lacks {k!r}" for k in METRIC_KEYS if k not in metrics]
    problems += [f"metrics.json[{k!r}] is {type(metrics[k]).__name__}, not a number" for k in METRIC_KEYS
                 if k in metrics and metrics[k] is not None
                 and (isinstance(metrics[k], bool) or not isinstance(metrics[k], (int, float)))]
    if problems:
        return problems
    tag = config["dataset"] + (f"-if{config['imbalance']}" if config["imbalance"] is not None else "")
    want = (tag, f"{config['stage1_mode']}-{config['method']}", f"seed{config['seed']}")
    have = (d.parent.parent.name, d.parent.name, d.name)
    if want != have:
        problems.append(f"folder {'/'.join(have)} does not match its config ({'/'.join(want)})")
    try:
        with np.load(d / "predictions.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        return problems + [f"predictions.npz unreadable: {type(e).__name__}: {e}"]
    missing = set(PREDICTION_KEYS) - set(arrays)
    if missing:
        return problems + [f"predictions.npz lacks {sorted(missing)}"]
    n = len(arrays["labels"])
    for k in PREDICTION_KEYS:
        if arrays[k].shape != (n,):
            problems.append(f"predictions.npz[{k!r}] has shape {arrays[k].shape}, expected ({n},)")
    if problems:
        return problems
    counts = np.asarray(config["train_class_counts"])
    c = len(counts)
    if n and (arrays["labels"].min() < 0 or arrays["labels"].max() >= c or arrays["pred"].min() < 0
              or arrays["pred"].max() >= c):
        problems.append(f"labels or predictions outside [0, {c - 1}]")
    conf = arrays["confidence"]
    if not np.all(np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1 + 1e-6:
        problems.append("confidence outside [0, 1]")
    if problems:
        return problems
    mine = compute_metrics(arrays, counts)
    for k in METRIC_KEYS:
        r, v = metrics.get(k), mine.get(k)
        if isinstance(r, float) and math.isnan(r):
            problems.append(f"{k} is NaN")
        elif not _close(r, v, tol):
            problems.append(f"{k}: metrics.json says {r}, recomputed {v}")
    return problems


def check_all(results: Path | str, tol: float = 1e-6) -> dict[Path, list[str]]:
    """Problems of every entry under ``<results>/runs`` that is or should be a run folder, by path.

    Beyond ``check_run`` on each ``<dataset>/<stage1>-<method>/seed<S>`` folder (complete or not), this flags the
    hidden ``.seed<S>.tmp-*`` / ``.old-*`` folders a killed writer leaves behind and stray entries that do not fit
    the layout, so a reader knows what the tables will leave out and why. Sound runs map to an empty list.
    """
    root = Path(results) / "runs"
    out: dict[Path, list[str]] = {}
    if not root.is_dir():
        return out
    for ds in sorted(root.iterdir()):
        if ds.name.startswith(".probe-"):
            out[ds] = ["leftover write probe (a killed process); safe to delete"]
            continue
        if not ds.is_dir():
            out[ds] = ["stray file: expected only <dataset> folders under runs/"]
            continue
        for name in sorted(ds.iterdir()):
            if not name.is_dir() or "-" not in name.name or name.name.startswith("."):
                out[name] = ["stray entry: expected <stage1>-<method> folders"]
                continue
            for seed in sorted(name.iterdir()):
                if seed.name.startswith(".") and (".tmp-" in seed.name or ".old-" in seed.name):
                    out[seed] = ["leftover of an interrupted write (not a run; `results check --clean` removes it)"]
                elif not seed.is_dir() or not seed.name.startswith("seed") or not seed.name[4:].isdigit():
                    out[seed] = ["stray entry: expected seed<S> run folders"]
                else:
                    out[seed] = check_run(seed, tol)
    return out


def is_leftover(path: Path) -> bool:
    """True for the hidden tmp/old folders and write probes that ``check_all`` reports as leftovers."""
    n = Path(path).name
    return n.startswith(".probe-") or (n.startswith(".") and (".tmp-" in n or ".old-" in n))
