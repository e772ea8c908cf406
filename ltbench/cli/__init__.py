"""The ``bench.py`` command line: one click group, every command attached here with a plain import.

Each module holds one command (or one command group); nothing registers itself at import time, so a broken
module fails loudly here. Modules import torch only inside their commands, so ``bench.py --help`` and
``bench.py run --help`` stay fast.

Errors: a ``LtbenchError`` (bad input the user can fix) and a click usage error (bad option value, missing or
unknown option) both print one line, ``error: ...``, to stderr and exit with status 2; a usage error adds where
to look: ``; see 'bench.py <command> -h'``.
"""
from __future__ import annotations

import sys

import click

from ..errors import LtbenchError
from .data import data_group
from .grid import grid
from .report import compare, leaderboard, plot, site, stats, table
from .results import results_group
from .run import EXAMPLES, list_cmd, run


def _usage_line(e: click.UsageError) -> str:
    """``error: <message>; see 'bench.py <command> -h'``: click's message on one line, without its usage block."""
    msg = " ".join(e.format_message().split()).rstrip(".")
    msg = msg.replace(". (Did you mean", " (did you mean").replace(". Did you mean", "; did you mean")
    if msg[:1].isupper() and msg[1:2].islower():  # "Invalid value for ..." -> "invalid value for ..."
        msg = msg[0].lower() + msg[1:]
    path = e.ctx.command_path.split()[1:] if e.ctx is not None else []
    root = "ltbench" if e.ctx is not None and e.ctx.find_root().info_name == "ltbench" else "bench.py"
    return f"error: {msg}; see '{' '.join([root, *path])} -h'"


class OneLineUsageError(click.UsageError):
    """A click usage error shown as the one ``error:`` line every other bad input gets (exit status 2)."""

    def __init__(self, e: click.UsageError) -> None:
        super().__init__(e.message, e.ctx)
        self.line = _usage_line(e)

    def show(self, file=None) -> None:
        click.secho(self.line, fg="red", err=True)


class _Group(click.Group):
    """Turn LtbenchError and click usage errors into one clear line and exit status 2 (no traceback, no usage
    block)."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:  # e.g. `bench.py --bogus`, `bench.py tabel`
            raise OneLineUsageError(e) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LtbenchError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)
        except (click.exceptions.NoArgsIsHelpError, OneLineUsageError):
            raise
        except click.UsageError as e:  # a subcommand's: bad value, missing or unknown option, unknown command
            raise OneLineUsageError(e) from None


@click.group(cls=_Group, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """ltbench: decoupled long-tailed recognition benchmarks (CE, cRT, LWS, tau-norm, SWA, SWAG, SWA + SRepr)."""


cli.add_command(run)
cli.add_command(list_cmd)
cli.add_command(grid)
cli.add_command(table)
cli.add_command(compare)
cli.add_command(plot)
cli.add_command(leaderboard)
cli.add_command(stats)
cli.add_command(site)
cli.add_command(data_group)
cli.add_command(results_group)
