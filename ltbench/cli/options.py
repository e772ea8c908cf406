"""Click options and value types shared by more than one command (torch-free, so ``bench.py --help`` stays fast).

``run`` and ``grid`` speak one vocabulary: ``--dataset``, ``--imbalance``, ``--seed``, ``--method``, ``--stage1``.
``grid`` takes several of each, repeated or as a comma list (``--seed 0,1,2`` or ``--seed 0 --seed 1``):
:class:`ListType` converts one occurrence and :func:`flatten` joins the occurrences and refuses repeats.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import click

from ..config import SEED_LIMIT, STAGE1_MODES, check_seed, default_output_dir  # noqa: F401  (check_seed: re-exported)
from ..errors import LtbenchError

output_folder_option = click.option(
    "--results", type=click.Path(file_okay=False), default=default_output_dir,
    show_default="$LTBENCH_RESULTS, else ./outputs",
    help="where run folders are written (results/ is the committed leaderboard store: pass --results results to "
         "add to it)")


class SeedType(click.ParamType):
    """``--seed`` / ``--subset-seed``: an integer in [0, 2^32), refused by click before any compute."""

    name = "seed"

    def __init__(self, what: str = "seed") -> None:
        self.what = what

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT:
            return value
        try:
            return check_seed(value, self.what)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class ListType(click.ParamType):
    """One occurrence of a list option: a value or a comma list (``0,1,2``), each item converted by ``item``
    (which raises ValueError with the reason). Empty entries (``0,,1``) and an empty value are refused."""

    def __init__(self, item: Callable[[str], Any], name: str, plural: str, example: str) -> None:
        self.item, self.name, self.plural, self.example = item, name, plural, example

    def convert(self, value, param, ctx):
        if isinstance(value, list):  # already converted
            return value
        items = [t.strip() for t in str(value).split(",")] if isinstance(value, str) else [value]
        if all(t == "" for t in items):
            self.fail(f"no {self.plural} given; give at least one, e.g. {self.example}", param, ctx)
        if any(t == "" for t in items):
            self.fail(f"{value!r} has an empty entry; give {self.plural} as {self.example}", param, ctx)
        out = []
        for t in items:
            try:
                out.append(self.item(t))
            except ValueError as e:
                self.fail(str(e), param, ctx)
        return out


def flatten(ctx: click.Context, param: click.Parameter, value: tuple[list, ...]) -> list:
    """Callback of a repeatable list option: the items of every occurrence, in order; a repeated item is an error
    (``--seed 1,1`` would plan one run twice)."""
    out = [x for occurrence in value or () for x in occurrence]
    seen = set()
    for x in out:
        if x in seen:
            raise click.BadParameter(f"{','.join(map(str, out))!r} repeats {x}", ctx, param)
        seen.add(x)
    return out


def _int(t: str) -> int:
    try:
        return int(str(t).strip())
    except ValueError:
        raise ValueError(f"{t!r} is not an integer") from None


def _stage1(t: str) -> str:
    if t not in STAGE1_MODES:
        raise ValueError(f"{t!r} is not one of {', '.join(STAGE1_MODES)}")
    return t


def _name(t: str) -> str:
    return str(t)


SEED = SeedType()
SUBSET_SEED = SeedType("subset seed")
SEEDS = ListType(check_seed, "seeds", "seeds", "--seed 0 or --seed 0,1,2")
IMBALANCES = ListType(_int, "factors", "imbalance factors", "--imbalance 10,50,100")
DATASETS = ListType(_name, "names", "datasets", "--dataset cifar10-lt,cifar100-lt")
METHODS = ListType(_name, "names", "methods", "--method ce,crt")
STAGE1S = ListType(_stage1, "modes", "extractors", "--stage1 sgd,swa")


def list_option(*decls: str, type: ListType, default: tuple = (), help: str, **kw):
    """A repeatable option that also takes comma lists; the command receives one flat list."""
    return click.option(*decls, type=type, multiple=True, default=default, callback=flatten, help=help,
                         show_default=bool(default), **kw)


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


def _warn_oversubscribed(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """More threads than cores is allowed (and recorded) but almost always slower: say so once."""
    import os
    cores = os.cpu_count() or 1
    if value is not None and value > cores:
        click.echo(f"warning: --threads {value} is more than this machine's {cores} cores; oversubscribed torch "
                   "threads are usually slower (recorded as given)", err=True)
    return value


def threads_option(f):
    return click.option("--threads", type=click.IntRange(min=1), default=None, callback=_warn_oversubscribed,
                        help="CPU threads for torch (default: all cores); recorded as environment.cpu_threads")(f)


def compile_option(f):
    return click.option("--compile/--no-compile", "compile_", default=None,
                        help="stage 1 through torch.compile (an execution option: same math, not in the stage-1 "
                             "cache key; default: the preset's, off); a compile failure continues eagerly")(f)


def options_for_methods(pairs: tuple[str, ...], methods: list[str]) -> dict[str, dict]:
    """``--option`` values per method: each option goes to the selected methods that declare it; a key that no
    selected method declares is an error (so a typo never silently does nothing). One rule for ``run``,
    ``run --method all`` and ``grid``."""
    from ..options import parse_cli_options
    from ..registry import get_method
    given = parse_cli_options(pairs)
    per = {m: {k: v for k, v in given.items() if k in get_method(m).defaults} for m in methods}
    unused = sorted(set(given) - {k for opts in per.values() for k in opts})
    if unused:
        valid = sorted({k for m in methods for k in get_method(m).defaults})
        raise LtbenchError(f"--option {', '.join(unused)}: no selected method ({', '.join(methods)}) has "
                           f"{'this option' if len(unused) == 1 else 'these options'}; their options: "
                           f"{', '.join(valid) or 'none'} (see `bench.py list`)")
    return per


def subset_seed_option(f):
    return click.option("--subset-seed", type=SUBSET_SEED, default=0, show_default=True,
                        help="the NumPy seed of the long-tailed subset drawn from the official train set; 0 is the "
                             "LDAM-DRW protocol (another value is recorded and named in the run folder: "
                             "<dataset>-if<IF>-subset<K>)")(f)
