#!/usr/bin/env python3
"""ltbench command line: run benchmark methods on long-tailed datasets and report the results.

The commands live in ``ltbench/cli/``; this file only starts them (also installed as the ``ltbench`` console
script, the same click group).
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for pretrained weights at run time

from ltbench.cli import cli  # noqa: E402

if __name__ == "__main__":
    cli()
