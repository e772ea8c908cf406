"""Synthetic, audit-passing run folders for the report tests (no training: arrays are drawn directly)."""
from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np

from ltbench.metrics import compute_metrics
from ltbench.paths import iter_run_dirs
from ltbench.registry import get_method
from ltbench.store import run_dir, write_run

TRAIN_COUNTS = [500, 300, 150, 90, 60, 40, 25, 15, 10, 5]  # many: 3, medium: 4, few: 3

REPO = Path(__file__).resolve().parents[1]
# The committed stores: the full-schedule leaderboard, and nested in it every store with its own runs/ (the reduced
# CPU grid kept as measured; runs under another preset, e.g. cifar-ldam): each is checked like the main one.
# A nested folder counts once it holds a finished run (an empty runs/ of a grid still training is not a store yet).
COMMITTED_STORES = [REPO / "results"] + sorted(p.parent for p in (REPO / "results").glob("*/runs")
                                               if any(iter_run_dirs(p.parent)))
STORE_IDS = [s.name for s in COMMITTED_STORES]


def copy_store(store: Path, root: Path, skip: tuple[str, ...] = ()) -> Path:
    """Copy a committed store to the same relative path under ``root`` (so commands run from ``root`` name it as the
    committed files do), leaving out the stores nested in it and the top-level entries in ``skip``."""
    rel = store.relative_to(REPO)
    nested = {p.name for p in store.iterdir() if p.is_dir() and p.name != "runs" and (p / "runs").is_dir()}
    leave = nested | set(skip)
    shutil.copytree(store, root / rel, ignore=lambda d, names: [n for n in names if Path(d) == store and n in leave])
    return rel


def make_arrays(rng: np.random.Generator, acc: float, n_per_class: int = 30,
                num_classes: int = len(TRAIN_COUNTS)) -> dict[str, np.ndarray]:
    """Prediction arrays with roughly ``acc`` accuracy and a spread of confidences."""
    labels = np.repeat(np.arange(num_classes), n_per_class)
    correct = rng.random(len(labels)) < acc
    pred = np.where(correct, labels, (labels + rng.integers(1, num_classes, len(labels))) % num_classes)
    conf = rng.uniform(0.15, 1.0, len(labels))
    p_true = np.where(correct, conf, rng.uniform(0.01, 1.0, len(labels)) * (1 - conf))
    sq = conf ** 2 + p_true ** 2 * (~correct) + rng.uniform(0, 0.05, len(labels)) * (1 - conf) ** 2
    return {"labels": labels.astype(np.int64), "pred": pred.astype(np.int64),
            "confidence": conf.astype(np.float32), "log_prob_true": np.log(p_true).astype(np.float32),
            "sq_prob_sum": sq.astype(np.float32)}


def make_run(results: Path, method: str, stage1: str, seed: int, acc: float, dataset: str = "cifar10-lt",
             imbalance: int | None = 100, reduced: bool = False, counts=TRAIN_COUNTS,
             subset_seed: int = 0, config_extra: dict | None = None) -> tuple[Path, dict]:
    """Write one run folder the way ``bench.py run`` lays it out; return (folder, metrics).

    ``subset_seed`` is recorded (and enters the folder name) only when non-zero, like a run of the CLI."""
    rng = np.random.default_rng(zlib.crc32(f"{method}/{stage1}/{seed}/{dataset}/{imbalance}".encode()))
    arrays = make_arrays(rng, acc, num_classes=len(counts))  # already in the stored dtypes, so the audit agrees
    metrics = compute_metrics(arrays, np.asarray(counts))
    tag = dataset + (f"-if{imbalance}" if imbalance is not None else "")
    tag += f"-subset{subset_seed}" if subset_seed else ""
    config = {"method": method, "dataset": dataset, "imbalance": imbalance, "dataset_tag": tag,
              "stage1_mode": stage1, "seed": seed, "reduced": reduced,
              "stage1": {"epochs": 10 if reduced else 200, "protocol_epochs": 200},
              "stage2": {"epochs": 10}, "train_class_counts": list(counts), "environment": {},
              # every option resolved, as a run of the CLI records them (so the run is at its method's defaults)
              "method_options": json.loads(json.dumps(get_method(method).defaults))}
    if subset_seed:
        config["subset_seed"] = subset_seed
    config.update(config_extra or {})
    d = write_run(run_dir(results, tag, f"{stage1}-{method}", seed), config, metrics, arrays,
                  [{"epoch": 0}], b"\x89PNG fake")
    return d, metrics


def build_results(root: Path) -> dict[str, Path]:
    """A small results tree covering: several seeds, a single seed, a reduced setting, a mixed full/reduced setting
    and a run whose metrics.json was tampered with (so it fails the audit)."""
    out = {}
    for s in range(3):
        make_run(root, "ce", "sgd", s, 0.45)
        make_run(root, "crt", "sgd", s, 0.62)
    make_run(root, "crt", "swa", 0, 0.55)
    for s in range(2):
        make_run(root, "lws", "swa", s, 0.5, dataset="cifar100-lt", imbalance=50, reduced=True)
    make_run(root, "lws", "sgd", 0, 0.4, dataset="cifar100-lt", imbalance=50)
    out["dropped_reduced"], _ = make_run(root, "lws", "sgd", 1, 0.9, dataset="cifar100-lt", imbalance=50, reduced=True)
    bad, metrics = make_run(root, "tau_norm", "sgd", 0, 0.99)
    metrics["acc"] = 99.0  # no longer what predictions.npz gives
    (bad / "metrics.json").write_text(json.dumps(metrics))
    out["bad"] = bad
    return out
