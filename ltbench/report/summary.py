"""The results table printed at the end of ``bench.py run``."""
from __future__ import annotations

import json
from pathlib import Path

import click

COLUMNS = [("acc", "acc"), ("acc_many", "many"), ("acc_medium", "medium"), ("acc_few", "few"),
           ("nll", "NLL"), ("ece", "ECE"), ("brier", "Brier")]


def _fmt(v, key: str) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if key in ("nll", "brier") else f"{v:.2f}"


def print_run_table(run_dirs: list[Path]) -> None:
    head = f"{'run':<44}" + "".join(f"{name:>8}" for _, name in COLUMNS)
    click.echo(head)
    click.echo("-" * len(head))
    for d in run_dirs:
        m = json.loads((Path(d) / "metrics.json").read_text())
        c = json.loads((Path(d) / "config.json").read_text())
        name = f"{c['dataset_tag']}/{c['stage1_mode']}-{c['method']}/seed{c['seed']}" + (" *" if c.get("reduced") else "")
        click.echo(f"{name:<44}" + "".join(f"{_fmt(m.get(k), k):>8}" for k, _ in COLUMNS))
    click.echo("acc/many/medium/few/ECE in %, NLL in nats; * = reduced schedule. Run folders: "
               + ", ".join(str(d) for d in run_dirs))
    if run_dirs:
        store = Path(run_dirs[0]).parents[3]  # <results>/runs/<dataset>/<stage1>-<method>/seed<S>
        click.echo(f"Tables and plots of these runs: bench.py table --results {store} (likewise compare, plot)")
