"""Where runs and caches live on disk: the one module that knows both layouts (torch-free).

Run store (``--results``)::

    <results>/runs/<dataset_tag>/<stage1>-<method>/seed<S>/
    dataset_tag = <dataset>[-if<IF>][-subset<K>]   (-subset only for a non-zero data-subset seed)

Cache (``$LTBENCH_CACHE``, else ``~/.cache/ltbench``)::

    stage1/<dataset_tag>-<mode>-seed<S>-<stage1 key>-d<data fingerprint[:8]>/   final.pt, ckpt.pt
        features/base-<split>.pt                       frozen extractor's features of one split
        features/swag-pool-<pool key>-<split>.pt       SWAG pool features of one split
        features/swag-pool-<pool key>-members.pt       the pool's sampled networks
    stage2/<stage-1 folder name>-<method>-<stage-2 hash>/

Everything that builds or reads one of these names goes through here, so the two layouts cannot drift apart
between the writer (runner, stage 1), the readers (tables, audit, summary) and the planner (grid).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

RUNS = "runs"
FINGERPRINT_CHARS = 8  # data-fingerprint hex digits in a stage-1 folder name

# ------------------------------------------------------------------------------------------------ run store


def dataset_tag(dataset: str, imbalance: int | None, subset_seed: int = 0) -> str:
    """``cifar100-lt-if100``; ``-subset<K>`` only for a non-zero subset seed, so protocol names never change."""
    return (dataset + (f"-if{imbalance}" if imbalance is not None else "")
            + (f"-subset{subset_seed}" if subset_seed else ""))


def run_name(stage1_mode: str, method: str) -> str:
    return f"{stage1_mode}-{method}"


def seed_name(seed: int) -> str:
    return f"seed{seed}"


def runs_root(results: Path | str) -> Path:
    """``<results>/runs``: the folder holding every run of a store."""
    return Path(results) / RUNS


def run_dir(results: Path | str, dataset_tag: str, run_name: str, seed: int) -> Path:
    """A run folder from its parts (see :func:`run_dir_for` to build it from a config)."""
    return runs_root(results) / dataset_tag / run_name / seed_name(seed)


def run_dir_for(cfg: Any, results: Path | str | None = None) -> Path:
    """The run folder of a ``RunConfig`` (under ``cfg.results`` unless ``results`` is given)."""
    return run_dir(cfg.results if results is None else results, cfg.dataset_tag, cfg.run_name, cfg.seed)


@dataclass(frozen=True)
class RunParts:
    """What a run folder's path says about the run: the inverse of :func:`run_dir`."""

    results: Path
    dataset_tag: str
    dataset: str
    imbalance: int | None
    subset_seed: int
    stage1_mode: str
    method: str
    seed: int

    @property
    def run_name(self) -> str:
        return run_name(self.stage1_mode, self.method)


_TAG = re.compile(r"^(?P<dataset>.+?)(?:-if(?P<imb>\d+))?(?:-subset(?P<sub>\d+))?$")
_SEED = re.compile(r"^seed(?P<seed>\d+)$")


def parse_dataset_tag(tag: str) -> tuple[str, int | None, int]:
    """``cifar100-lt-if100-subset3`` -> (``cifar100-lt``, 100, 3); ``cifar10-lt-tiny`` -> (``cifar10-lt-tiny``,
    None, 0). Raises ValueError for a name :func:`dataset_tag` cannot have written."""
    m = _TAG.match(tag)
    if not m or not m["dataset"] or tag.startswith("."):
        raise ValueError(f"{tag!r} is not a <dataset>[-if<N>][-subset<K>] folder name")
    sub = int(m["sub"]) if m["sub"] else 0
    if m["sub"] is not None and (sub == 0 or m["sub"] != str(sub)):
        raise ValueError(f"{tag!r}: a subset seed in a folder name is a non-zero number without leading zeros")
    return m["dataset"], int(m["imb"]) if m["imb"] else None, sub


def parse_run_name(name: str) -> tuple[str, str]:
    """``swa-tau_norm`` -> (``swa``, ``tau_norm``); ValueError for a name :func:`run_name` cannot have written."""
    mode, sep, method = name.partition("-")
    if not sep or not mode or not method or name.startswith("."):
        raise ValueError(f"{name!r} is not a <stage1>-<method> folder name")
    return mode, method


def parse_seed_name(name: str) -> int:
    """``seed3`` -> 3; ValueError otherwise."""
    m = _SEED.match(name)
    if not m:
        raise ValueError(f"{name!r} is not a seed<S> folder name")
    return int(m["seed"])


def parse_run_dir(d: Path | str) -> RunParts:
    """The parts of ``<results>/runs/<dataset_tag>/<stage1>-<method>/seed<S>``; ValueError if ``d`` is not one."""
    d = Path(d)
    if d.parent.parent.parent.name != RUNS:
        raise ValueError(f"{d} is not a <results>/{RUNS}/<dataset>/<stage1>-<method>/seed<S> folder")
    tag = d.parent.parent.name
    seed = parse_seed_name(d.name)
    stage1_mode, method = parse_run_name(d.parent.name)
    dataset, imbalance, subset = parse_dataset_tag(tag)
    return RunParts(d.parent.parent.parent.parent, tag, dataset, imbalance, subset, stage1_mode, method, seed)


def results_of(d: Path | str) -> Path:
    """The store (``--results`` folder) a run folder belongs to."""
    return parse_run_dir(d).results


def run_path_of_config(config: dict) -> tuple[str, str, str]:
    """(dataset tag, run name, seed folder) that a recorded ``config.json`` says its folder must be called.

    A config written before the subset seed existed has none: it is the protocol's subset (0)."""
    tag = dataset_tag(config["dataset"], config["imbalance"], int(config.get("subset_seed") or 0))
    return tag, run_name(config["stage1_mode"], config["method"]), seed_name(config["seed"])


def run_path_of_dir(d: Path | str) -> tuple[str, str, str]:
    """(dataset tag, run name, seed folder) of a run folder as named on disk (compared with
    :func:`run_path_of_config` by the audit)."""
    d = Path(d)
    return d.parent.parent.name, d.parent.name, d.name


def config_dataset_tag(config: dict) -> str:
    """The dataset tag of a recorded ``config.json`` (computed, not trusted from its ``dataset_tag`` field)."""
    return run_path_of_config(config)[0]


def iter_run_dirs(results: Path | str) -> Iterator[Path]:
    """Every completed run folder under ``<results>/runs`` (hidden temporary folders are skipped)."""
    root = runs_root(results)
    if not root.is_dir():
        return
    for m in sorted(root.glob("*/*/seed*/metrics.json")):
        if not any(part.startswith(".") for part in m.relative_to(root).parts):
            yield m.parent


# ---------------------------------------------------------------------------------------------------- cache


def cache_root() -> Path:
    """``$LTBENCH_CACHE`` if set, else ``~/.cache/ltbench``: stage-1 networks and features, never in git."""
    return Path(os.environ.get("LTBENCH_CACHE", Path.home() / ".cache" / "ltbench"))


def stage1_cache_root() -> Path:
    return cache_root() / "stage1"


def stage2_cache_root() -> Path:
    return cache_root() / "stage2"


def stage1_prefix(cfg: Any) -> str:
    """The stage-1 folder name without its data fingerprint: ``<dataset_tag>-<mode>-seed<S>-<stage1 key>``."""
    return f"{cfg.dataset_tag}-{cfg.stage1_mode}-seed{cfg.seed}-{cfg.stage1_key()}"


def stage1_dir(cfg: Any, fingerprint: str | None = None) -> Path:
    """The stage-1 cache folder of ``cfg``, keyed by the fingerprint of the training data loaded (so a network
    trained on other data under the same config, e.g. a wrong data root since fixed, is never reused). Without a
    fingerprint: the name stem, before the data is loaded."""
    name = stage1_prefix(cfg)
    if fingerprint is not None:
        name += f"-d{fingerprint[:FINGERPRINT_CHARS]}"
    return stage1_cache_root() / name


def stage1_candidates(cfg: Any) -> list[Path]:
    """Stage-1 folders of ``cfg`` for any training data (the fingerprint is known only once data is loaded)."""
    prefix = stage1_prefix(cfg)
    root = stage1_cache_root()
    if not root.is_dir():
        return []
    pat = re.compile(re.escape(prefix) + r"-d[^-]+$")
    return sorted(p for p in root.iterdir() if pat.match(p.name))


def stage1_cached(cfg: Any) -> bool:
    """True when some stage-1 folder of ``cfg`` holds a finished ``final.pt`` (for plans and projections)."""
    return any((d / "final.pt").is_file() for d in stage1_candidates(cfg))


def stage2_key(cfg: Any) -> str:
    """Hash of what a stage-2 checkpoint depends on beyond stage 1: method, its options, stage-2 and eval settings.

    An option added later whose default is how earlier runs behaved (its ``Method.legacy_options`` value equals
    its default) enters the hash only away from that default, so adding it keeps their checkpoints' keys."""
    from .registry import get_method  # lazy: imports torch
    cls = get_method(cfg.method)
    unkeyed = {k for k, v in cls.legacy_options.items() if cls.defaults.get(k) == v}
    options = {k: v for k, v in cfg.method_options.items() if k not in unkeyed or v != cls.defaults[k]}
    payload = json.dumps({"method": cfg.method, "options": options,
                          "stage2": cfg.stage2.recorded(), "eval": cfg.eval_batch_size}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def stage2_dir(cfg: Any, stage1_folder: Path | str) -> Path:
    """The stage-2 working folder (checkpoints) of ``cfg`` over the stage-1 artifact in ``stage1_folder``."""
    return stage2_cache_root() / f"{Path(stage1_folder).name}-{cfg.method}-{stage2_key(cfg)}"


def stage2_dirs_of(stage1_folder: Path | str) -> list[Path]:
    """Every stage-2 folder derived from one stage-1 artifact (dropped when it is retrained)."""
    root = stage2_cache_root()
    return sorted(root.glob(f"{Path(stage1_folder).name}-*")) if root.is_dir() else []


def features_dir(stage1_folder: Path | str) -> Path:
    return Path(stage1_folder) / "features"


def base_features_file(stage1_folder: Path | str, split: str) -> Path:
    """Features of the frozen stage-1 extractor on one split."""
    return features_dir(stage1_folder) / f"base-{split}.pt"


def swag_pool_file(stage1_folder: Path | str, key: str, split: str) -> Path:
    """Features of one split under the SWAG pool with key ``key``."""
    return features_dir(stage1_folder) / f"swag-pool-{key}-{split}.pt"


def swag_members_file(stage1_folder: Path | str, key: str) -> Path:
    """The sampled networks (weights and BN statistics) of the SWAG pool with key ``key``."""
    return features_dir(stage1_folder) / f"swag-pool-{key}-members.pt"
