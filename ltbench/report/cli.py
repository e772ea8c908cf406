"""Report commands for ``bench.py``: table, compare, plot, leaderboard (added by ``register``)."""
from __future__ import annotations

from pathlib import Path

import click

from ..checkpoint import atomic_write_bytes
from ..errors import LtbenchError

EXAMPLES = """
\b
Examples:
  bench.py table --format latex --dataset cifar100-lt-if100 -o paper/table.tex
  bench.py table --format markdown
  bench.py compare --dataset cifar10-lt
  bench.py plot --out results/plots
  bench.py leaderboard
"""

_results_opt = click.option("--results", type=click.Path(file_okay=False), default="results", show_default=True,
                            help="results folder holding runs/")
_dataset_opt = click.option("--dataset", "datasets", multiple=True,
                            help="dataset name (e.g. cifar10-lt) or tag (e.g. cifar10-lt-if100); repeatable")


def _warn(lines: list[str]) -> None:
    for line in lines:
        click.secho(line, fg="yellow", err=True)


def _emit(text: str, output: str | None) -> None:
    if output:
        atomic_write_bytes(Path(output), text.encode())
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command(epilog=EXAMPLES)
@_results_opt
@_dataset_opt
@click.option("--format", "fmt", default="markdown", show_default=True, help="latex, markdown or csv")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="write here, not to stdout")
def table(results: str, datasets: tuple[str, ...], fmt: str, output: str | None) -> None:
    """Mean ± std over seeds per stage-1 extractor x method, one column group per dataset."""
    from .tables import FORMATS, exclusion_lines, load_table, render

    if fmt not in FORMATS:
        raise LtbenchError(f"unknown --format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    agg, col = load_table(results, datasets or None)
    _warn(exclusion_lines(col))
    _emit(render(agg, fmt), output)


@click.command(epilog=EXAMPLES)
@_results_opt
@_dataset_opt
@click.option("--baselines", type=click.Path(dir_okay=False), default=None,
              help="published numbers (default: results/baselines.csv of this repository)")
@click.option("--format", "fmt", default="markdown", show_default=True, help="table file format: markdown or csv")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="also write the table here")
def compare(results: str, datasets: tuple[str, ...], baselines: str | None, fmt: str, output: str | None) -> None:
    """Our runs beside the published numbers for the same dataset, imbalance factor and method."""
    from . import baselines as bl
    from .tables import exclusion_lines, load_table

    if fmt not in ("markdown", "csv"):
        raise LtbenchError(f"unknown --format {fmt!r} for compare; valid formats: markdown, csv")
    if baselines is None and (Path(results) / "baselines.csv").is_file():
        baselines = str(Path(results) / "baselines.csv")
    base = bl.load_baselines(baselines)
    agg, col = load_table(results, datasets or None)
    _warn(exclusion_lines(col))
    cmp = bl.compare(agg, base)
    if cmp.empty:
        have = ", ".join(sorted(set(agg.dataset_tag)))
        raise LtbenchError(f"no published number matches the recorded settings ({have}); published numbers cover "
                           f"{', '.join(sorted(base.dataset.unique()))} (see bench.py compare --help)")
    md = bl.render_compare_markdown(cmp)
    click.echo(md, nl=False)
    if output:
        atomic_write_bytes(Path(output), (md if fmt == "markdown" else bl.render_compare_csv(cmp)).encode())
        click.echo(f"wrote {output}", err=True)


@click.command(epilog=EXAMPLES)
@_results_opt
@_dataset_opt
@click.option("--out", type=click.Path(file_okay=False), default=None, help="folder for the figures "
              "(default: <results>/plots)")
def plot(results: str, datasets: tuple[str, ...], out: str | None) -> None:
    """Reliability diagrams (per method, overlaid), per-class accuracy vs. class frequency, accuracy vs. ECE."""
    from .plots import plot_all
    from .tables import exclusion_lines, load_table

    agg, col = load_table(results, datasets or None)
    _warn(exclusion_lines(col))
    for p in plot_all(col.runs, agg, Path(out) if out else Path(results) / "plots"):
        click.echo(str(p))


@click.command(epilog=EXAMPLES)
@_results_opt
@click.option("--baselines", type=click.Path(dir_okay=False), default=None,
              help="published numbers (default: <results>/baselines.csv, else this repository's)")
@click.option("--no-plots", is_flag=True, help="tables and README only")
def leaderboard(results: str, baselines: str | None, no_plots: bool) -> None:
    """Regenerate <results>/README.md, <results>/tables/ and <results>/plots/ from the run folders."""
    from .leaderboard import build_leaderboard

    if baselines is None and (Path(results) / "baselines.csv").is_file():
        baselines = str(Path(results) / "baselines.csv")
    written = build_leaderboard(results, baselines, plots=not no_plots,
                                echo=lambda s: click.secho(s, fg="yellow" if s.startswith("warning") else None,
                                                           err=True))
    click.echo(f"wrote {len(written)} files; leaderboard: {Path(results) / 'README.md'}")


def register(cli: click.Group) -> None:
    """Add the report commands to the ``bench.py`` group (called from ``ltbench.cli_extra``)."""
    for cmd in (table, compare, plot, leaderboard):
        cli.add_command(cmd)
