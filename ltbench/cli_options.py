"""Click options shared by more than one command (kept torch-free so ``bench.py --help`` stays fast)."""
from __future__ import annotations

import click

from .config import default_output_dir

output_folder_option = click.option(
    "--results", type=click.Path(file_okay=False), default=default_output_dir,
    show_default="$LTBENCH_RESULTS, else ./outputs",
    help="where run folders are written (results/ is the committed leaderboard store: pass --results results to "
         "add to it)")
