"""Report commands of ``bench.py``: table, compare, plot, leaderboard, stats, site (over the run folders)."""
from __future__ import annotations

from pathlib import Path

import click

from ..config import default_output_dir
from ..errors import LtbenchError

EXAMPLES = """
\b
Examples:
  bench.py table                                   # your runs (outputs/, or $LTBENCH_RESULTS)
  bench.py table --results results --format latex --dataset cifar100-lt-if100 -o paper/table.tex
  bench.py compare --results results --dataset cifar10-lt
  bench.py leaderboard --results results           # regenerate the committed leaderboard
  bench.py compare --results results --paired swa-srepr swa-crt --dataset cifar10-lt-if100
  bench.py stats --results results
  bench.py site --results results
"""

# one rule for every command: the store is $LTBENCH_RESULTS, else ./outputs (where `run` writes); the committed
# leaderboard store is addressed explicitly with --results results
_results_opt = click.option("--results", type=click.Path(file_okay=False), default=default_output_dir,
                            show_default="$LTBENCH_RESULTS, else ./outputs",
                            help="results folder holding runs/ (the committed store: --results results)")
_dataset_opt = click.option("--dataset", "datasets", multiple=True,
                            help="dataset name (e.g. cifar10-lt) or tag (e.g. cifar10-lt-if100); repeatable")


def _boot_opts(f):
    f = click.option("--boot-seed", type=int, default=0, show_default=True,
                     help="seed of the bootstrap's index stream (with the run's seed)")(f)
    return click.option("--bootstrap", type=click.IntRange(0), default=1000, show_default=True,
                        help="paired bootstrap resamples of the test examples per seed (0: seed statistics only)")(f)


def _compare_paired(results: str, datasets: tuple[str, ...], names: tuple[str, str], bootstrap: int, boot_seed: int,
                    output: str | None) -> None:
    from ..report.stats import paired, render_text
    from ..report.tables import exclusion_lines, load_table

    a, b = names
    if a == b:
        raise LtbenchError(f"--paired {a} {b}: name two different runs (e.g. --paired swa-srepr swa-crt)")
    agg, col = load_table(results, datasets or None)
    _warn(exclusion_lines(col))
    runs = col.runs
    have = sorted(set(runs.stage1_mode + "-" + runs.method))
    for n in (a, b):
        if n not in have:
            raise LtbenchError(f"--paired: no sound runs named {n!r} under {Path(results) / 'runs'}; "
                               f"recorded: {', '.join(have)} (names are <stage1>-<method>)")
    texts = []
    for tag in sorted(runs.dataset_tag.unique()):
        c = paired(runs, tag, a, b, replicates=bootstrap, boot_seed=boot_seed)
        if c is not None:
            texts.append(render_text(c))
    if not texts:
        raise LtbenchError(f"--paired: no setting has runs of both {a} and {b} with a common seed on the same schedule "
                           "(both full or both reduced)")
    text = "\n".join(texts)
    _emit(text, None)
    if output:
        atomic_write_bytes(Path(output), text.encode())
        click.echo(f"wrote {output}", err=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``checkpoint.atomic_write_bytes``, imported on use (it imports torch, which ``--help`` should not)."""
    from ..checkpoint import atomic_write_bytes as write
    write(path, data)


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
@click.option("--cost", is_flag=True, help="also stage-1 / stage-2 wall time (mean over seeds) and device per setting")
def table(results: str, datasets: tuple[str, ...], fmt: str, output: str | None, cost: bool) -> None:
    """Mean ± std over seeds per stage-1 extractor x method, one column group per dataset."""
    from ..report.tables import FORMATS, exclusion_lines, load_table, render

    if fmt not in FORMATS:
        raise LtbenchError(f"unknown --format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    agg, col = load_table(results, datasets or None)
    _warn(exclusion_lines(col))
    _emit(render(agg, fmt, cost=cost), output)


@click.command(epilog=EXAMPLES)
@_results_opt
@_dataset_opt
@click.option("--baselines", type=click.Path(dir_okay=False), default=None,
              help="published numbers (default: results/baselines.csv of this repository)")
@click.option("--format", "fmt", default="markdown", show_default=True, help="table file format: markdown or csv")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="also write the table here")
@click.option("--paired", nargs=2, metavar="A B", default=None,
              help="instead: paired statistics of run A minus run B (names like swa-srepr swa-crt) per setting")
@_boot_opts
def compare(results: str, datasets: tuple[str, ...], baselines: str | None, fmt: str, output: str | None,
            paired: tuple[str, str] | None, bootstrap: int, boot_seed: int) -> None:
    """Our runs beside the published numbers for the same dataset, imbalance factor and method.

    With --paired A B: A - B over the seeds both have (mean, std, 95% t-interval, seeds agreeing in sign) and a
    paired bootstrap over the test examples (accuracy, NLL, ECE), for every setting that has both.
    """
    from ..report import baselines as bl
    from ..report.tables import exclusion_lines, load_table

    if paired:
        _compare_paired(results, datasets, paired, bootstrap, boot_seed, output)
        return
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
    # as `table`: the file in the asked format, or the asked format on stdout
    _emit(bl.render_compare_markdown(cmp) if fmt == "markdown" else bl.render_compare_csv(cmp), output)


@click.command(epilog=EXAMPLES)
@_results_opt
@_dataset_opt
@click.option("--out", type=click.Path(file_okay=False), default=None, help="folder for the figures "
              "(default: <results>/plots)")
def plot(results: str, datasets: tuple[str, ...], out: str | None) -> None:
    """Reliability diagrams (per method, overlaid), per-class accuracy vs. class frequency, accuracy vs. ECE."""
    from ..report.plots import plot_all
    from ..report.tables import exclusion_lines, load_table

    agg, col = load_table(results, datasets or None)
    _warn(exclusion_lines(col))
    for p in plot_all(col.runs, agg, Path(out) if out else Path(results) / "plots"):
        click.echo(str(p))


@click.command(epilog=EXAMPLES)
@_results_opt
@click.option("--baselines", type=click.Path(dir_okay=False), default=None,
              help="published numbers (default: <results>/baselines.csv, else this repository's)")
@click.option("--no-plots", is_flag=True, help="tables and README only; plots/ is left as it is")
@click.option("--html", "html_dir", type=click.Path(file_okay=False), default=None,
              help="also write the static site to DIR (as `bench.py site --out DIR`)")
def leaderboard(results: str, baselines: str | None, no_plots: bool, html_dir: str | None) -> None:
    """Regenerate <results>/README.md, <results>/tables/ and <results>/plots/ from the run folders."""
    from ..report.leaderboard import build_leaderboard

    if baselines is None and (Path(results) / "baselines.csv").is_file():
        baselines = str(Path(results) / "baselines.csv")
    echo = lambda s: click.secho(s, fg="yellow" if s.startswith("warning") else None, err=True)  # noqa: E731
    written = build_leaderboard(results, baselines, plots=not no_plots, echo=echo)
    click.echo(f"wrote {len(written)} files; leaderboard: {Path(results) / 'README.md'}")
    if html_dir:
        from ..report.site import build_site

        site_files = build_site(results, Path(html_dir), baselines, echo=echo)
        click.echo(f"wrote {len(site_files)} site files; open {Path(html_dir) / 'index.html'}")


@click.command(epilog=EXAMPLES)
@_results_opt
@click.option("--reference", default="crt", show_default=True,
              help="stage-2 method every other method is compared against (on the same extractor)")
@_boot_opts
def stats(results: str, reference: str, bootstrap: int, boot_seed: int) -> None:
    """Write <results>/stats.md and stats.csv: paired differences (seeds and bootstrap) for every setting."""
    from ..report.stats import all_comparisons, write_stats
    from ..report.tables import exclusion_lines, load_table

    _, col = load_table(results)
    _warn(exclusion_lines(col))
    comps = all_comparisons(results, reference, bootstrap, boot_seed, runs=col.runs)
    for p in write_stats(results, reference, bootstrap, boot_seed, comps=comps, runs=col.runs):
        click.echo(f"wrote {p}")


@click.command(epilog=EXAMPLES)
@_results_opt
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="folder for the site (default: <results>/site)")
@click.option("--baselines", type=click.Path(dir_okay=False), default=None,
              help="published numbers (default: <results>/baselines.csv, else this repository's)")
@click.option("--reference", default="crt", show_default=True, help="reference method of the statistics pages")
@_boot_opts
def site(results: str, out: str | None, baselines: str | None, reference: str, bootstrap: int,
         boot_seed: int) -> None:
    """Write the static leaderboard site from the run folders (into <results>/site also <results>/stats.md, .csv).

    Open <out>/index.html from disk: no server, nothing fetched from the network. Figures and reliability
    diagrams are linked relatively from <results>/plots and the run folders (run `bench.py leaderboard` first
    so that the figures exist).
    """
    from ..report.site import build_site

    if baselines is None and (Path(results) / "baselines.csv").is_file():
        baselines = str(Path(results) / "baselines.csv")
    written = build_site(results, Path(out) if out else None, baselines, reference, bootstrap, boot_seed,
                         echo=lambda s: click.secho(s, fg="yellow" if s.startswith("warning") else None, err=True))
    index = (Path(out) if out else Path(results) / "site") / "index.html"
    click.echo(f"wrote {len(written)} files; open {index}")

