"""Run configuration: a preset file (``ltbench/presets/*.toml``) plus CLI overrides, resolved into dataclasses.

Everything a run depends on ends up in ``RunConfig`` and is written, resolved, to the run's ``config.json``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import LtbenchError

PRESET_DIR = Path(__file__).parent / "presets"
STAGE1_MODES = ("sgd", "swa")
PRECISIONS = ("auto", "bf16", "fp32")
SEED_LIMIT = 2 ** 32  # numpy's and CUDA's seeds are 32-bit; torch wraps larger ones, and a folder name needs one value


def check_seed(value: object, what: str = "seed") -> int:
    """A seed as an int in [0, 2^32), or ValueError saying why not: one rule for ``--seed`` (run and grid),
    ``--subset-seed`` and configs (torch- and click-free, so the CLI's option types can use it too)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} {value!r} is not an integer")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{what} {value!r} is not an integer") from None
    if not isinstance(value, int):
        raise ValueError(f"{what} {value!r} is not an integer")
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{what} {value} is outside [0, 2^32 - 1]; seeds are non-negative 32-bit integers")
    return value


@dataclass
class Stage1Config:
    """Feature-extractor training. ``swa_start`` / ``warmup_epochs`` are in epochs of the preset schedule
    (``preset_epochs``) and are scaled when ``--epochs`` shortens it."""

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
    # "cosine": warm-up, cosine to 0 (SGD) or towards swa_lr (SWA), the first author's SWA code; "step": warm-up,
    # then lr x lr_gamma at each of lr_milestones (LDAM-DRW / BagofTricks-LT: x0.01 at 160 and 180 of 200)
    lr_schedule: str = "cosine"
    lr_milestones: list[int] = field(default_factory=lambda: [160, 180])
    lr_gamma: float = 0.01
    channels_last: bool = True
    precision: str = "auto"      # auto: bf16 on CUDA and on CPUs with native bf16, else fp32 (train/loop.py)
    compile: bool = False
    cuda_graphs: bool = False    # CUDA only: forward + backward as CUDA graphs (compile mode "reduce-overhead")

    def __post_init__(self) -> None:
        if self.protocol_epochs is None:
            self.protocol_epochs = self.epochs
        if self.preset_epochs is None:
            self.preset_epochs = self.epochs

    def scaled_swa_start(self, epochs: int) -> int:
        """The preset's SWA start scaled to a run of ``epochs`` epochs (leaving at least one averaging epoch)."""
        ratio = epochs / self.preset_epochs  # as stage1_schedule: the same float, the same rounding
        return max(min(int(round(self.swa_start * ratio)), epochs - 1), 0)


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
    # "cosine" (default: to 0 over the stage-2 epochs) or "step": lr x lr_gamma at each of lr_milestones, with
    # warmup_epochs of whole-epoch warm-up first (BagofTricks-LT's cRT: 5 warm-up epochs, x0.1 at 10 and 20 of 30)
    lr_schedule: str = "cosine"
    lr_milestones: list[int] = field(default_factory=lambda: [10, 20])
    lr_gamma: float = 0.1
    warmup_epochs: float = 0

    def __post_init__(self) -> None:
        if self.protocol_epochs is None:
            self.protocol_epochs = self.epochs

    def recorded(self) -> dict:
        """The fields as config.json and the stage-2 cache key hold them: the schedule fields only when they are
        used (step schedule, a warm-up), so the cosine default keeps every existing record and key unchanged."""
        d = asdict(self)
        if self.lr_schedule == "cosine":
            for k in ("lr_schedule", "lr_milestones", "lr_gamma"):
                d.pop(k)
        if not self.warmup_epochs:
            d.pop("warmup_epochs")
        return d


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
    # NumPy seed of the long-tailed subset drawn from the full train set (CIFAR-LT); 0 is the LDAM-DRW protocol
    # and leaves every name and key as it was; another value names its own setting (``<tag>-subset<S>``)
    subset_seed: int = 0

    @property
    def reduced(self) -> bool:
        """True when either stage runs fewer epochs than its protocol."""
        return (self.stage1.epochs < self.stage1.protocol_epochs) or (self.stage2.epochs < self.stage2.protocol_epochs)

    @property
    def dataset_tag(self) -> str:
        from .paths import dataset_tag
        return dataset_tag(self.dataset, self.imbalance, self.subset_seed)

    @property
    def run_name(self) -> str:
        return f"{self.stage1_mode}-{self.method}"

    def stage1_schedule(self) -> dict[str, Any]:
        """Warm-up and SWA start scaled to the actual number of epochs (at least one averaging epoch)."""
        s = self.stage1
        ratio = s.epochs / s.preset_epochs
        out = {"warmup_epochs": float(s.warmup_epochs) * ratio, "swa_start": s.scaled_swa_start(s.epochs)}
        if s.lr_schedule == "step":  # milestones scale like the SWA start; absent for cosine (unchanged keys)
            out["lr_milestones"] = [float(m) * ratio for m in s.lr_milestones]
        return out

    def lr_milestones_after_swa_start(self) -> list[float]:
        """Step-schedule milestones (scaled) at or after the SWA start of an SWA stage 1: the constant swa_lr
        holds from the start on (the reference SWA schedule), so these never take effect. [] otherwise."""
        if self.stage1_mode != "swa" or self.stage1.lr_schedule != "step":
            return []
        sched = self.stage1_schedule()
        return [m for m in sched["lr_milestones"] if m >= sched["swa_start"]]

    @property
    def swa_snapshots(self) -> int:
        """How many weight snapshots SWA stage 1 collects (one per epoch after the SWA start); 0 for SGD."""
        return self.stage1.epochs - int(self.stage1_schedule()["swa_start"]) if self.stage1_mode == "swa" else 0

    def stage1_precision(self, device=None) -> str:
        """The stage-1 precision actually used (``auto`` resolved for ``device``, else for ``self.device``)."""
        import torch  # lazy: keeps ``bench.py --help`` free of torch

        from .train.loop import resolve_precision
        if device is None:
            name = self.device if self.device in ("cpu", "cuda") else ("cuda" if torch.cuda.is_available() else "cpu")
            device = torch.device(name)
        return resolve_precision(self.stage1.precision, torch.device(device))

    def stage1_key(self, precision: str | None = None) -> str:
        """Hash of everything stage 1 depends on: runs that share it share one cached stage-1 artifact.

        The precision enters resolved (``auto`` is bf16 on one machine and fp32 on another: different networks);
        ``precision`` passes the resolved value when the caller has it already."""
        s = {k: v for k, v in asdict(self.stage1).items() if k not in STAGE1_EXECUTION_OPTIONS}
        if s["lr_schedule"] == "cosine":  # the step fields only when used: every existing key stays unchanged
            for k in ("lr_schedule", "lr_milestones", "lr_gamma"):
                s.pop(k)
        s["precision"] = precision if precision is not None else self.stage1_precision()
        payload = {"dataset": self.dataset, "imbalance": self.imbalance, "mode": self.stage1_mode,
                   "seed": self.seed, "stage1": s, "schedule": self.stage1_schedule(),
                   "deterministic": self.deterministic}
        if self.subset_seed:  # only when not the protocol's subset: every existing key stays unchanged
            payload["subset_seed"] = self.subset_seed
        if self.data:  # only split-list datasets have [data]; CIFAR keys stay unchanged
            payload["data"] = {k: v for k, v in self.data.items() if k not in ("workers", "decode", "check_files")}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.stage1.lr_schedule == "cosine":  # the step fields are recorded only when they are used
            for k in ("lr_milestones", "lr_gamma"):
                d["stage1"].pop(k)
        d["stage2"] = self.stage2.recorded()
        d["reduced"] = self.reduced
        d["dataset_tag"] = self.dataset_tag
        d["stage1_schedule"] = self.stage1_schedule()
        precision = self.stage1_precision()  # resolved once: it looks at the device
        d["stage1_key"] = self.stage1_key(precision)
        d["stage1_precision"] = precision
        d["swa_snapshots"] = self.swa_snapshots
        if late := self.lr_milestones_after_swa_start():  # recorded only when it happens: other configs unchanged
            d["stage1_lr_milestones_unused"] = late
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


PRESET_SECTIONS = ("description", "stage1", "stage2", "eval", "data", "methods")
EVAL_KEYS = {"batch_size": "int"}


_KIND_WORDS = {"int": "an integer", "float": "a number", "bool": "a boolean (true or false, unquoted)",
               "str": "a string", "floats": "a list of numbers (e.g. [0.5, 1.0])",
               "list[int]": "a list of whole numbers (e.g. [160, 180])"}


def _expected(annotation: str) -> str:
    """A field annotation in the user's words: ``int | None`` -> ``an integer`` (a preset cannot write None)."""
    kinds = [a.strip() for a in str(annotation).split("|") if a.strip() != "None"]
    return " or ".join(_KIND_WORDS.get(k, k) for k in kinds)


def _check_value(value: Any, annotation: str, where: str) -> Any:
    """``value`` checked against a dataclass field annotation (``int``, ``float``, ``bool``, ``str``,
    ``int | None``...); ints are accepted for floats. A wrong type is an error, never a silent coercion."""
    kinds = [a.strip() for a in str(annotation).split("|")]
    if "list[int]" in kinds and isinstance(value, list) and \
            all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return list(value)
    if value is None and "None" in kinds:
        return value
    if "bool" in kinds and isinstance(value, bool):
        return value
    if isinstance(value, bool):
        raise LtbenchError(f"{where} must be {_expected(annotation)}, got the boolean {str(value).lower()}")
    if "int" in kinds and isinstance(value, int):
        return value
    if "float" in kinds and isinstance(value, (int, float)):
        return float(value)
    if "str" in kinds and isinstance(value, str):
        return value
    raise LtbenchError(f"{where} must be {_expected(annotation)}, got {value!r} ({type(value).__name__})")


# epoch counts: a preset's value also becomes protocol_epochs / preset_epochs when --epochs shortens the run
_EPOCH_KEYS = ("epochs", "protocol_epochs", "preset_epochs")


def _check_table(cls, values: dict, where: str) -> dict:
    """A preset's ``[stage1]`` / ``[stage2]`` table checked key by key, as the user wrote it: unknown keys, wrong
    types and epoch counts below 1 are errors naming ``where`` (the preset file and table) and the user's key.
    Runs before the command line's overrides, which copy ``epochs`` into internal fields (``preset_epochs``...)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise LtbenchError(f"{where}: unknown keys {sorted(unknown)}; valid: {sorted(fields)}")
    checked = {k: _check_value(v, fields[k].type, f"{where} {k}") for k, v in values.items()}
    for k in _EPOCH_KEYS:
        if k in checked and checked[k] is not None and checked[k] < 1:
            raise LtbenchError(f"{where} {k} must be at least 1, got {checked[k]}")
    return checked


def _build(cls, values: dict, where: str):
    return cls(**_check_table(cls, values, where))


def _check_sections(raw: dict, path: str) -> None:
    unknown = sorted(set(raw) - set(PRESET_SECTIONS))
    if unknown:
        raise LtbenchError(f"preset {path}: unknown section(s) or key(s) {', '.join(unknown)}; valid: "
                           f"{', '.join(PRESET_SECTIONS)}")
    for sec in ("stage1", "stage2", "eval", "data", "methods"):
        if sec in raw and not isinstance(raw[sec], dict):
            raise LtbenchError(f"preset {path}: [{sec}] must be a table")
    if "description" in raw and not isinstance(raw["description"], str):
        raise LtbenchError(f"preset {path}: description must be a string, got {raw['description']!r}")
    bad = sorted(set(raw.get("eval", {})) - set(EVAL_KEYS))
    if bad:
        raise LtbenchError(f"preset {path} [eval]: unknown keys {bad}; valid: {sorted(EVAL_KEYS)}")


def _preset_option_type(option, value: Any, where: str) -> None:
    """A preset's value for a method option must already have the declared type: TOML values are typed, so
    ``balanced = "False"`` (a string) is an error, not a boolean. (``--option KEY=VALUE`` gets text and keeps
    converting it, in ``Option.coerce``.) TOML has no null: a nullable option may be written ``"none"``."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {"bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": number,
          "str": isinstance(value, str),
          "floats": isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    for v in value)}[option.type]
    if ok or (option.nullable and isinstance(value, str) and value.strip().lower() in ("none", "null")):
        return
    expected = _KIND_WORDS[option.type]
    if option.type == "str" and option.choices:
        expected += f" (one of {', '.join(option.choices)})"
    if option.nullable:
        expected += ' or "none"'
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    raise LtbenchError(f"{where} {option.name} must be {expected}, got {shown} ({type(value).__name__})")


def _check_preset_options(option_specs, opts: dict, where: str) -> dict[str, Any]:
    """A preset's ``[methods.<name>]`` table: declared options only, each of its declared type, then in range."""
    from .options import resolve_options
    by_name = {o.name: o for o in option_specs}
    for key, value in opts.items():
        if key in by_name:
            _preset_option_type(by_name[key], value, where)
    return resolve_options(option_specs, opts, where)


def method_options_for(method: str, raw: dict, cli_options: dict[str, Any], where: str) -> dict[str, Any]:
    """The resolved, typed options of ``method``: its declaration's defaults, then the preset's
    ``[methods.<method>]`` table, then the command line's values (each checked by the declaration), then the
    method's checks across options (``Method.validate``), so a bad combination fails here, before any compute."""
    from .registry import get_method  # lazy: imports torch
    cls = get_method(method)
    preset_opts = dict(raw.get("methods", {}).get(method, {}))
    _check_preset_options(cls.option_specs, preset_opts, f"{where} [methods.{method}]")
    return cls(**{**preset_opts, **cli_options}).options  # resolves each option, then Method.validate


def check_preset_methods(raw: dict, path: str) -> None:
    """Every ``[methods.<name>]`` table names a registered method and only its declared options, each of its
    declared type; every error names the preset file and the table."""
    from .registry import get_method, method_names
    for name, opts in raw.get("methods", {}).items():
        if not isinstance(opts, dict):
            raise LtbenchError(f"preset {path}: [methods.{name}] must be a table")
        if name not in method_names():
            raise LtbenchError(f"preset {path}: [methods.{name}] names an unknown method {name!r}; "
                               f"valid methods: {', '.join(method_names())}")
        _check_preset_options(get_method(name).option_specs, opts, f"preset {path} [methods.{name}]")


def resolve(method: str, dataset: str, imbalance: int | None, stage1_mode: str, seed: int, preset: str,
            epochs: int | None = None, stage2_epochs: int | None = None, subset_seed: int = 0,
            compile: bool | None = None, **kw: Any) -> RunConfig:
    """Merge a preset with CLI overrides into a validated ``RunConfig``.

    ``subset_seed``: the NumPy seed that draws the long-tailed subset (0, the protocol's, by default).
    ``compile``: stage 1 through ``torch.compile`` (an execution option) when not None, else the preset's."""
    if stage1_mode not in STAGE1_MODES:
        raise LtbenchError(f"unknown --stage1 {stage1_mode!r}; valid: {', '.join(STAGE1_MODES)}")
    raw = load_preset(preset)
    path = preset_path(preset)  # errors name the file, also for a built-in preset given by name
    _check_sections(raw, str(path))
    check_preset_methods(raw, str(path))
    # the preset's own values are checked under the keys the user wrote, before --epochs copies them
    s1 = _check_table(Stage1Config, dict(raw.get("stage1", {})), f"preset {path} [stage1]")
    s2 = _check_table(Stage2Config, dict(raw.get("stage2", {})), f"preset {path} [stage2]")
    if epochs is not None:
        if epochs < 1:
            raise LtbenchError("--epochs must be at least 1")
        s1.setdefault("protocol_epochs", s1.get("epochs", Stage1Config.epochs))
        s1.setdefault("preset_epochs", s1.get("epochs", Stage1Config.epochs))
        s1["epochs"] = epochs
    if compile is not None:
        s1["compile"] = bool(compile)
    if stage2_epochs is not None:
        if stage2_epochs < 1:
            raise LtbenchError("--stage2-epochs must be at least 1")
        s2.setdefault("protocol_epochs", s2.get("epochs", Stage2Config.epochs))
        s2["epochs"] = stage2_epochs
    options = method_options_for(method, raw, kw.pop("method_options", None) or {}, f"preset {path}")
    eval_bs = _check_value(raw.get("eval", {}).get("batch_size", 256), "int", f"preset {path} [eval] batch_size")
    cfg = RunConfig(
        method=method, dataset=dataset, imbalance=imbalance, stage1_mode=stage1_mode, seed=seed,
        subset_seed=subset_seed, preset=str(preset), stage1=_build(Stage1Config, s1, f"preset {path} [stage1]"),
        stage2=_build(Stage2Config, s2, f"preset {path} [stage2]"), method_options=options,
        eval_batch_size=eval_bs, data=dict(raw.get("data", {})), **kw,
    )
    validate(cfg)
    return cfg


def _check_lr_schedule(stage: str, sc, horizon: int, horizon_what: str) -> None:
    """One stage's ``lr_schedule``: "cosine" or "step"; for "step", milestones that are increasing whole epochs
    inside ``horizon`` (the epochs they are written for) and a decay factor in (0, 1]."""
    if sc.lr_schedule not in ("cosine", "step"):
        raise LtbenchError(f"{stage} lr_schedule must be 'cosine' or 'step', got {sc.lr_schedule!r}")
    if sc.lr_schedule == "step":
        ms = sc.lr_milestones
        if not (isinstance(ms, list) and ms and all(isinstance(m, int) and not isinstance(m, bool) for m in ms)
                and ms == sorted(set(ms)) and 0 < ms[0] and ms[-1] < horizon):
            raise LtbenchError(f"{stage} lr_milestones must be increasing whole epochs between 1 and "
                               f"{horizon - 1} ({horizon_what}), got {ms!r}")
        if not (0 < sc.lr_gamma <= 1):
            raise LtbenchError(f"{stage} lr_gamma must be in (0, 1], got {sc.lr_gamma}")


def validate(cfg: RunConfig) -> None:
    """Checks across fields, before any compute: ranges, the method's extractor, SWAG snapshots."""
    from .registry import get_dataset, get_method
    s1, s2 = cfg.stage1, cfg.stage2
    if s1.precision not in PRECISIONS:
        raise LtbenchError(f"stage1 precision must be one of {', '.join(PRECISIONS)}, got {s1.precision!r}")
    for where, v in (("stage1 epochs", s1.epochs), ("stage1 batch_size", s1.batch_size),
                     ("stage2 epochs", s2.epochs), ("stage2 batch_size", s2.batch_size),
                     ("eval batch_size", cfg.eval_batch_size)):
        if v < 1:
            raise LtbenchError(f"{where} must be at least 1, got {v}")
    for where, v in (("stage1 lr", s1.lr), ("stage1 swa_lr", s1.swa_lr), ("stage2 lr", s2.lr),
                     ("stage1 weight_decay", s1.weight_decay), ("stage2 weight_decay", s2.weight_decay),
                     ("stage1 momentum", s1.momentum), ("stage2 momentum", s2.momentum),
                     ("stage1 warmup_epochs", s1.warmup_epochs), ("stage1 swag_rank", s1.swag_rank)):
        if not (v >= 0) or v != v or v == float("inf"):
            raise LtbenchError(f"{where} must be a finite number >= 0, got {v}")
    for what, v in (("seed", cfg.seed), ("subset seed", cfg.subset_seed)):
        if isinstance(v, str):  # the CLI converts; a config holds the number itself
            raise LtbenchError(f"{what} must be an integer, got the string {v!r}")
        try:
            check_seed(v, what)
        except ValueError as e:
            raise LtbenchError(str(e)) from None
    if cfg.subset_seed and not getattr(get_dataset(cfg.dataset), "random_subset", False):
        raise LtbenchError(f"{cfg.dataset} has a fixed train subset (bundled or given by split lists), so there is "
                           f"no subset to draw: drop --subset-seed (got {cfg.subset_seed})")
    _check_lr_schedule("stage1", s1, s1.preset_epochs, "the preset's epochs")
    if not (s2.warmup_epochs >= 0) or s2.warmup_epochs >= s2.epochs:
        raise LtbenchError(f"stage2 warmup_epochs must be >= 0 and below the stage-2 epochs ({s2.epochs}), "
                           f"got {s2.warmup_epochs}")
    _check_lr_schedule("stage2", s2, s2.epochs, "the stage-2 epochs")
    cls = get_method(cfg.method)
    cls.check_stage1(cfg.stage1_mode)
    if cfg.stage1_mode == "swa":
        n = cfg.swa_snapshots
        if cls.requires_swag and n < 2:
            fewest = epochs_for_two_snapshots(s1)
            fix = (f"Use more --epochs (at least {fewest})" if fewest is not None else
                   f"No --epochs helps: SWA starts at epoch {s1.swa_start} of the preset's {s1.preset_epochs}; "
                   "lower [stage1] swa_start in the preset")
            raise LtbenchError(f"method {cfg.method!r} samples from SWAG, which needs at least 2 SWA snapshots; "
                               f"this schedule collects {n} ({s1.epochs} epochs, SWA from epoch "
                               f"{cfg.stage1_schedule()['swa_start']}). {fix}.")


def epochs_for_two_snapshots(stage1: Stage1Config) -> int | None:
    """The fewest ``--epochs`` whose scaled SWA schedule collects two snapshots; None when none does.

    With a = swa_start / preset_epochs < 1, a run of E epochs collects E - round(a E) >= E (1 - a) - 0.5 snapshots,
    so every E >= 2.5 / (1 - a) collects two: the search stops there. With a >= 1 the start is clipped to the
    last epoch for every E: one snapshot at most."""
    a = stage1.swa_start / stage1.preset_epochs
    if a >= 1:
        return None
    bound = max(2, math.ceil(2.5 / (1 - a)))
    return next(e for e in range(2, bound + 1) if e - stage1.scaled_swa_start(e) >= 2)
