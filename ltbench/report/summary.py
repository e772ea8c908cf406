"""The results table printed at the end of ``bench.py run``.

Column widths come from the cells themselves (at least the header, plus a two-space gutter), so a wide value such as
an NLL of 1297.370 widens its column instead of running into its neighbour.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..paths import results_of

COLUMNS = [("acc", "acc"), ("acc_many", "many"), ("acc_medium", "medium"), ("acc_few", "few"),
           ("nll", "NLL"), ("ece", "ECE"), ("brier", "Brier")]
GUTTER = "  "  # between any two columns, whatever their widths


def _fmt(v, key: str) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if key in ("nll", "brier") else f"{v:.2f}"


def format_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers; every column as wide as its widest cell."""
    widths = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head))]

    def line(cells: list[str]) -> str:
        return GUTTER.join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    out = [line(head), "-" * len(line(head))]
    return out + [line(r) for r in rows]


def run_table_lines(run_dirs: list[Path]) -> list[str]:
    rows, unstable = [], []
    for d in run_dirs:
        m = json.loads((Path(d) / "metrics.json").read_text())
        c = json.loads((Path(d) / "config.json").read_text())
        name = f"{c['dataset_tag']}/{c['stage1_mode']}-{c['method']}/seed{c['seed']}"
        name += " *" if c.get("reduced") else ""
        if c.get("unstable"):  # config.json's stability flags (ltbench.audit.stability_flags)
            name += " ‡"
            unstable.append(f"  {name[:-2]}: {'; '.join(map(str, c['unstable']))}")
        rows.append([name] + [_fmt(m.get(k), k) for k, _ in COLUMNS])
    out = format_table(["run"] + [name for _, name in COLUMNS], rows)
    if unstable:
        from .tables import unstable_bound_text
        out += [f"‡ = unstable stage 2 ({unstable_bound_text()}); recorded, but its numbers say little:", *unstable]
    return out


def print_run_table(run_dirs: list[Path]) -> None:
    for line in run_table_lines(run_dirs):
        click.echo(line)
    click.echo("acc/many/medium/few/ECE in %, NLL in nats; * = reduced schedule. Run folders: "
               + ", ".join(str(d) for d in run_dirs))
    if run_dirs:
        store = results_of(run_dirs[0])  # the --results folder of <results>/runs/<tag>/<stage1>-<method>/seed<S>
        click.echo(f"Tables and plots of these runs: bench.py table --results {store} (likewise compare, plot)")
