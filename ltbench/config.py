"""Run configuration: a preset file (``ltbench/presets/*.toml``) plus CLI overrides, resolved into dataclasses.

Everything a run depends on ends up in ``RunConfig`` and is written, resolved, to the run's ``config.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import LtbenchError

PRESET_DIR = Path(__file__).parent / "presets"
STAGE1_MODES = ("sgd", "swa")


@dataclass
class Stage1Config:
    """Feature-extractor training. ``swa_start`` / ``warmup_epochs`` are in epochs of the preset schedule (``preset_epochs``) and
    are scaled when ``--epochs`` shortens it."""

    arch: str = "resnet32"
    epochs: int = 200
    protocol_epochs: int | None = None   # the dataset protocol's epochs: fewer = a reduced schedule
    preset_epochs: int | None = None     # the epochs warmup_epochs / swa_start are written for
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 5
    swa_start: int = 150
    swa_lr: float = 0.05
    swag_rank: int = 20
    channels_last: bool = True
    amp_bf16: bool = True        # only used on CUDA
    compile: bool = False
    cuda_graphs: bool = False    # CUDA only: forward + backward as CUDA graphs (compile mode "reduce-overhead")

    def __post_init__(self) -> None:
        if self.protocol_epochs is None:
            self.protocol_epochs = self.epochs
        if self.preset_epochs is None:
            self.preset_epochs = self.epochs


@dataclass
class Stage2Config:
    """Classifier re-training shared by every stage-2 method; method-specific options live in ``options``."""

    epochs: int = 10
    protocol_epochs: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        if self.protocol_epochs is None:
            self.protocol_epochs = self.epochs


def default_output_dir() -> str:
    """Where ``run`` and ``grid`` write when ``--results`` is not given: ``$LTBENCH_RESULTS``, else ``outputs``.

    Not ``results/``: that folder is the committed leaderboard store, and a user's run of a setting it already holds
    (e.g. a 2-epoch check of a committed run) would collide with it. Report commands read ``results/`` by default.
    """
    return os.environ.get("LTBENCH_RESULTS") or "outputs"


# stage-1 options that change speed, not results: left out of the cache key and of run comparisons
STAGE1_EXECUTION_OPTIONS = ("compile", "cuda_graphs")


@dataclass
class RunConfig:
    method: str
    dataset: str
    imbalance: int | None
    stage1_mode: str
    seed: int
    preset: str
    stage1: Stage1Config
    stage2: Stage2Config
    method_options: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int = 256
    data_root: str | None = None
    results: str = field(default_factory=default_output_dir)  # where runs are written
    device: str = "auto"
    deterministic: bool = False
    save_logits: bool = False
    data: dict[str, Any] = field(default_factory=dict)  # [data] preset table: dataset load options

    @property
    def reduced(self) -> bool:
        """True when either stage runs fewer epochs than its protocol."""
        return (self.stage1.epochs < self.stage1.protocol_epochs) or (self.stage2.epochs < self.stage2.protocol_epochs)

    @property
    def dataset_tag(self) -> str:
        return self.dataset + (f"-if{self.imbalance}" if self.imbalance is not None else "")

    @property
    def run_name(self) -> str:
        return f"{self.stage1_mode}-{self.method}"

    def stage1_schedule(self) -> dict[str, float]:
        """Warm-up and SWA start scaled to the actual number of epochs (at least one averaging epoch)."""
        s = self.stage1
        ratio = s.epochs / s.preset_epochs
        swa_start = min(int(round(s.swa_start * ratio)), s.epochs - 1)
        return {"warmup_epochs": float(s.warmup_epochs) * ratio, "swa_start": max(swa_start, 0)}

    def stage1_key(self) -> str:
        """Hash of everything stage 1 depends on: runs that share it share one cached stage-1 artifact."""
        s = {k: v for k, v in asdict(self.stage1).items() if k not in STAGE1_EXECUTION_OPTIONS}
        payload = {"dataset": self.dataset, "imbalance": self.imbalance, "mode": self.stage1_mode,
                   "seed": self.seed, "stage1": s, "schedule": self.stage1_schedule(),
                   "deterministic": self.deterministic}
        if self.data:  # only split-list datasets have [data]; CIFAR keys stay unchanged
            payload["data"] = {k: v for k, v in self.data.items() if k not in ("workers", "decode", "check_files")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reduced"] = self.reduced
        d["dataset_tag"] = self.dataset_tag
        d["stage1_schedule"] = self.stage1_schedule()
        d["stage1_key"] = self.stage1_key()
        return d


def preset_path(preset: str) -> Path:
    p = Path(preset)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise LtbenchError(f"preset file {p} not found")
        return p
    p = PRESET_DIR / f"{preset}.toml"
    if not p.is_file():
        names = sorted(q.stem for q in PRESET_DIR.glob("*.toml"))
        raise LtbenchError(f"unknown preset {preset!r}; built-in presets: {', '.join(names)} (or give a .toml path)")
    return p


def preset_names() -> list[str]:
    return sorted(q.stem for q in PRESET_DIR.glob("*.toml"))


def load_preset(preset: str) -> dict:
    path = preset_path(preset)
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise LtbenchError(f"preset {path} is not valid TOML: {e}") from None


def _build(cls, values: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise LtbenchError(f"{where}: unknown keys {sorted(unknown)}; valid: {sorted(names)}")
    return cls(**values)


def resolve(method: str, dataset: str, imbalance: int | None, stage1_mode: str, seed: int, preset: str,
            epochs: int | None = None, stage2_epochs: int | None = None, **kw: Any) -> RunConfig:
    """Merge a preset with CLI overrides into a validated ``RunConfig``."""
    if stage1_mode not in STAGE1_MODES:
        raise LtbenchError(f"unknown --stage1 {stage1_mode!r}; valid: {', '.join(STAGE1_MODES)}")
    raw = load_preset(preset)
    s1 = dict(raw.get("stage1", {}))
    s2 = dict(raw.get("stage2", {}))
    if epochs is not None:
        if epochs < 1:
            raise LtbenchError("--epochs must be at least 1")
        s1.setdefault("protocol_epochs", s1.get("epochs", Stage1Config.epochs))
        s1.setdefault("preset_epochs", s1.get("epochs", Stage1Config.epochs))
        s1["epochs"] = epochs
    if stage2_epochs is not None:
        if stage2_epochs < 1:
            raise LtbenchError("--stage2-epochs must be at least 1")
        s2.setdefault("protocol_epochs", s2.get("epochs", Stage2Config.epochs))
        s2["epochs"] = stage2_epochs
    options = dict(raw.get("methods", {}).get(method, {}))
    options.update(kw.pop("method_options", None) or {})
    return RunConfig(
        method=method, dataset=dataset, imbalance=imbalance, stage1_mode=stage1_mode, seed=seed,
        preset=str(preset), stage1=_build(Stage1Config, s1, f"preset {preset} [stage1]"),
        stage2=_build(Stage2Config, s2, f"preset {preset} [stage2]"), method_options=options,
        eval_batch_size=int(raw.get("eval", {}).get("batch_size", 256)), data=dict(raw.get("data", {})), **kw,
    )
