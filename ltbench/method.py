"""The stage-2 method interface. A method takes the stage-1 artifact and returns a predictor.

A method never touches the run store: it gets a ``Stage2Context`` and returns a function from normalised
images to log-probabilities, which the evaluator runs on the test set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from .config import RunConfig
from .errors import LtbenchError
from .options import Option, resolve_options
from .evaluate import FeaturePredictor, Predictor
from .train.stage1 import Stage1Artifact


@dataclass
class Stage2Context:
    cfg: RunConfig
    data: Any                     # an LTData
    stage1: Stage1Artifact
    device: torch.device
    generator: torch.Generator    # seeded from the run seed: stage 2 is reproducible
    workdir: Path                 # cache folder for this (stage 1, method, options): checkpoints, features
    echo: Callable[[str], None] = print
    log: list[dict] = field(default_factory=list)  # stage-2 rows for log.jsonl
    info: dict = field(default_factory=dict)       # extra facts for config.json (e.g. the chosen tau)


@dataclass
class OracleCandidates:
    """What an oracle method returns: one ``FeaturePredictor`` per value of ``param``. The evaluator, which alone
    holds the test split, keeps the most accurate candidate on it (ties: the first) and records the sweep."""

    param: str
    candidates: dict[float, FeaturePredictor]


class TrainOnly:
    """The dataset as a stage-2 method sees it: everything but the test split (images, labels, batches).

    The evaluator alone holds the test split; a method that needs test features returns a ``FeaturePredictor``.
    """

    _HIDDEN = ("test_x", "test_y", "test_labels", "test_files", "with_test")

    def __init__(self, data: Any) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        # every test_* attribute, present or future (images, labels, the file paths of a split-list dataset)
        if name in TrainOnly._HIDDEN or name.startswith("test_"):
            raise AttributeError(f"stage-2 methods never see the test split ({name}); return a FeaturePredictor "
                                 "and let the evaluator apply it")
        return getattr(object.__getattribute__(self, "_data"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_data"), name, value)

    def eval_batches(self, split: str, *args: Any, **kw: Any):
        if split != "train":
            raise AttributeError(f"stage-2 methods never see the {split!r} split; return a FeaturePredictor")
        return object.__getattribute__(self, "_data").eval_batches(split, *args, **kw)


class Method:
    """Base class of a stage-2 method: one file in ``methods/``, discovered, declaring everything about itself.

    A subclass sets ``name`` (its one registered name), ``label`` (display name in tables), ``order`` (table
    position), ``stage1_modes`` (the extractors it runs on) and ``option_specs`` (typed options, see
    ``ltbench.options``), and implements ``fit``. Defining the subclass registers it (``__init_subclass__``).
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    order: ClassVar[int] = 100
    stage1_modes: ClassVar[tuple[str, ...]] = ("sgd", "swa")
    option_specs: ClassVar[tuple[Option, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}      # derived from option_specs
    requires_swag: ClassVar[bool] = False        # derived from stage1_modes
    oracle: ClassVar[bool] = False               # chooses with test labels (via OracleCandidates): marked in tables
    # options added after runs were recorded, with the value that reproduces how those runs behaved: a finished run
    # without the option is compared as if it had this value (so a rule change is not hidden behind a skip); one
    # whose legacy value is also its default stays out of the stage-2 cache key at that value (``paths.stage2_key``)
    legacy_options: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.defaults = {o.name: o.default for o in cls.option_specs}
        cls.requires_swag = tuple(cls.stage1_modes) == ("swa",)
        if cls.name:
            from .registry import add_method
            add_method(cls)

    def __init__(self, **options: Any) -> None:
        self.options = resolve_options(self.option_specs, options, f"method {self.name!r}")
        self.validate()

    def validate(self) -> None:
        """Checks across options (each option alone is checked by its declaration); raise ``LtbenchError``."""

    @classmethod
    def check_stage1(cls, stage1_mode: str) -> None:
        if stage1_mode not in cls.stage1_modes:
            raise LtbenchError(f"method {cls.name!r} runs on --stage1 {' or '.join(cls.stage1_modes)} "
                               f"(got --stage1 {stage1_mode})"
                               + ("; it samples from SWAG, which SWA stage 1 collects" if cls.requires_swag else ""))

    @classmethod
    def display(cls) -> str:
        return cls.label or cls.name

    def fit(self, ctx: Stage2Context) -> Predictor:  # pragma: no cover - interface
        raise NotImplementedError
