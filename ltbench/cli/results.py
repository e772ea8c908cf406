"""``bench.py results check``: audit every run folder under ``<results>/runs`` and list what is wrong.

The tables and the leaderboard already leave out runs that fail ``ltbench.audit.check_run``; this command shows
the whole picture (including leftovers of killed writers and half-present folders) and exits 1 when anything is
wrong, so it can gate CI or a merge of someone else's results.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import click

from .. import paths
from ..errors import LtbenchError
from .options import FiniteFloatType


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``1 entry``, ``0 entries``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


@click.group(name="results")
def results_group() -> None:
    """Validate the results store."""


@results_group.command(name="check")
@click.option("--results", type=click.Path(file_okay=False), default="results", show_default=True,
              help="results folder holding runs/")
@click.option("--tol", type=FiniteFloatType(0.0), default=1e-6, show_default=True,
              help="relative tolerance between metrics.json and the metrics recomputed from predictions.npz")
@click.option("--clean", is_flag=True,
              help="delete leftovers of interrupted writes (hidden .tmp-/.old- folders, write probes) after "
                   "listing them; only do this while no run is writing into this results folder")
@click.option("--quiet", is_flag=True, help="print only the problems and the summary")
def check(results: str, tol: float, clean: bool, quiet: bool) -> None:
    """Check every run folder: files present, schema, metrics recomputed from predictions.npz, config
    consistent with the folder name. Prints one line per problem; exit status 1 if there is any."""
    from ..audit import check_all, is_leftover

    root = Path(results)
    if not root.is_dir():  # a typo must not pass as "nothing to check"
        raise LtbenchError(f"results folder {root} does not exist; pass --results DIR of a folder that holds runs/")
    if not paths.runs_root(root).is_dir():
        click.echo(f"no runs under {paths.runs_root(root)}")
        return
    report = check_all(root, tol)
    bad_runs = cleaned = problems = 0
    for path, probs in report.items():
        rel = path.relative_to(root)
        if not probs:
            if not quiet:
                click.echo(f"ok    {rel}")
            continue
        if clean and is_leftover(path):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            click.echo(f"clean {rel}: removed ({probs[0]})")
            cleaned += 1
            continue
        bad_runs += 1
        for p in probs:
            problems += 1
            click.echo(f"FAIL  {rel}: {p}")
    ok = sum(1 for p in report.values() if not p)
    checked = len(report) - cleaned
    click.echo(f"{plural(checked, 'entry', 'entries')} checked: {plural(ok, 'sound run')}"
               + (f", {plural(bad_runs, 'entry', 'entries')} with {plural(problems, 'problem')}; the tables and "
                  f"the leaderboard leave {'it' if bad_runs == 1 else 'them'} out" if bad_runs else ", no problems")
               + (f"; {plural(cleaned, 'leftover')} removed" if cleaned else ""))
    if bad_runs:
        raise SystemExit(1)
