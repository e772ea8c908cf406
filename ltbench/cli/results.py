"""``bench.py results check`` and ``results replot``: the results store as a whole.

``check`` audits every run folder under ``<results>/runs`` and lists what is wrong. The tables and the leaderboard
already leave out runs that fail ``ltbench.audit.check_run``; this command shows the whole picture (including
leftovers of killed writers and half-present folders) and exits 1 when anything is wrong, so it can gate CI or a
merge of someone else's results.

``replot`` redraws each sound run's ``reliability.png`` from its ``predictions.npz`` with the current figure code,
so runs recorded before a change of the figure read like new ones (the numbers are untouched).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import click

from .. import paths
from ..config import default_output_dir
from ..errors import LtbenchError
from ..progress import plural
from .options import FiniteFloatType

_store_option = click.option("--results", type=click.Path(file_okay=False), default=default_output_dir,
                             show_default="$LTBENCH_RESULTS, else ./outputs",
                             help="results folder holding runs/ (the committed store: --results results)")


def _existing_store(results: str) -> Path:
    """The store folder, which must exist and hold runs/: a typo (or runs/ itself) must not pass as "nothing to
    check" in CI."""
    root = Path(results)
    if not root.is_dir():
        raise LtbenchError(f"results folder {root} does not exist; pass --results DIR of a folder that holds runs/")
    if not paths.runs_root(root).is_dir():
        raise LtbenchError(f"{root} has no runs/ folder, so it is not a results store"
                           + (" (it is the runs/ folder of one: pass its parent)" if root.name == paths.RUNS else "")
                           + "; pass --results DIR of a folder that holds runs/")
    return root


@click.group(name="results")
def results_group() -> None:
    """Validate the results store."""


@results_group.command(name="check")
@_store_option
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

    root = _existing_store(results)
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


@results_group.command(name="replot")
@_store_option
@click.option("--quiet", is_flag=True, help="print only the summary")
def replot(results: str, quiet: bool) -> None:
    """Redraw every sound run's reliability.png from its predictions.npz with the current figure (counts per
    bin, every bar in the legend). Runs that fail the audit are left alone and listed; numbers never change."""
    from ..audit import check_run
    from ..checkpoint import atomic_write_bytes
    from ..report.reliability import reliability_png
    from ..store import read_run

    root = _existing_store(results)
    done, skipped = 0, []
    for d in paths.iter_run_dirs(root):
        problems = check_run(d)
        if problems:
            skipped.append((d, problems[0]))
            continue
        run = read_run(d)
        cfg = run["config"]
        tag, name, seed = paths.run_path_of_config(cfg)
        title = f"{tag} {name} {seed}" + (" (reduced)" if cfg.get("reduced") else "")
        atomic_write_bytes(d / "reliability.png", reliability_png(run["predictions"], title))
        done += 1
        if not quiet:
            click.echo(f"redrawn {d.relative_to(root)}/reliability.png")
    for d, why in skipped:
        click.echo(f"skip  {d.relative_to(root)}: fails the audit ({why})")
    click.echo(f"{plural(done, 'reliability diagram')} redrawn under {paths.runs_root(root)}"
               + (f"; {plural(len(skipped), 'run')} left alone (see above)" if skipped else ""))
