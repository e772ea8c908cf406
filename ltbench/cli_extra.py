"""Attach the CLI command groups that live beside their libraries (reports, data, results, grid) to ``bench.py``.

Each module named here exposes ``register(cli)``; keeping them out of ``bench.py`` keeps the CLI file short and
lets every part of the library own its commands.
"""
from __future__ import annotations

import importlib

import click

COMMAND_MODULES = ("ltbench.report.cli", "ltbench.data.cli", "ltbench.results_cli", "ltbench.grid")


def register(cli: click.Group) -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(cli)  # plain import: a broken module is an error, not a gap
