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
from .evaluate import Predictor
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


class Method:
    """Base class. Subclasses set ``defaults`` (every option with its default) and implement ``fit``."""

    name: ClassVar[str] = ""
    requires_swag: ClassVar[bool] = False   # needs --stage1 swa (SWAG moments)
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.defaults)
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise LtbenchError(f"method {self.name!r}: unknown options {sorted(unknown)}; valid options: {valid}")
        self.options = {**self.defaults, **options}

    @classmethod
    def check_stage1(cls, stage1_mode: str) -> None:
        if cls.requires_swag and stage1_mode != "swa":
            raise LtbenchError(f"method {cls.name!r} samples from SWAG and needs --stage1 swa "
                               f"(got --stage1 {stage1_mode})")

    def fit(self, ctx: Stage2Context) -> Predictor:  # pragma: no cover - interface
        raise NotImplementedError
