"""Click options and value types shared by more than one command (kept torch-free so ``bench.py --help`` stays fast)."""
from __future__ import annotations

import math

import click

from .config import default_output_dir

SEED_LIMIT = 2 ** 32  # numpy's and CUDA's seeds are 32-bit; torch wraps larger ones, and a folder name needs one value

output_folder_option = click.option(
    "--results", type=click.Path(file_okay=False), default=default_output_dir,
    show_default="$LTBENCH_RESULTS, else ./outputs",
    help="where run folders are written (results/ is the committed leaderboard store: pass --results results to "
         "add to it)")


def check_seed(value: object) -> int:
    """A seed as an int in [0, 2^32), or ValueError saying why not (one rule for ``run``, ``grid`` and presets)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
    if not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{value} is outside [0, 2^32 - 1]; seeds are non-negative 32-bit integers")
    return value


class SeedType(click.ParamType):
    """``--seed``: an integer in [0, 2^32), refused by click before any compute."""

    name = "seed"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT:
            return value
        try:
            return check_seed(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class SeedListType(click.ParamType):
    """``--seeds 0,1,2``: a non-empty comma-separated list of seeds, each in [0, 2^32), no repeats."""

    name = "seeds"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [t.strip() for t in str(value).split(",")]
            if any(t == "" for t in items) and any(t != "" for t in items):
                self.fail(f"{value!r} has an empty entry; give seeds as 0,1,2", param, ctx)
        if not items or all(t == "" for t in items):
            self.fail("no seeds given; give at least one, e.g. --seeds 0 or --seeds 0,1,2", param, ctx)
        out = []
        for t in items:
            try:
                out.append(check_seed(t))
            except ValueError as e:
                self.fail(str(e), param, ctx)
        if len(set(out)) != len(out):
            self.fail(f"{value!r} repeats a seed", param, ctx)
        return out


class FiniteFloatType(click.ParamType):
    """A finite float >= ``minimum`` (click's FloatRange lets nan through: nan < 0 is false)."""

    name = "float"

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x) or x < self.minimum:
            self.fail(f"{value!r} is not a finite number >= {self.minimum:g}", param, ctx)
        return x


SEED = SeedType()
SEEDS = SeedListType()
