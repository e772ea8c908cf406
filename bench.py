#!/usr/bin/env python3
"""ltbench command line: run benchmark methods on long-tailed datasets and report the results.

Also installed as the ``ltbench`` console script (the same click group).
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for pretrained weights at run time

import click  # noqa: E402

from ltbench.cli_options import SEED, output_folder_option  # noqa: E402
from ltbench import cli_extra  # noqa: E402
from ltbench.errors import LtbenchError  # noqa: E402

EXAMPLES = """
\b
Examples:
  bench.py run --method ce --dataset cifar100-lt-tiny
  bench.py run --method crt --dataset cifar100-lt --imbalance 100 --stage1 swa --data-root ../shared/data
  bench.py run --method all --dataset cifar10-lt --imbalance 50 --seed 1
  bench.py list
"""


class _Group(click.Group):
    """Turn LtbenchError into one clear line and exit status 2 (no traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LtbenchError as e:
            click.secho(f"error: {e}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """ltbench: decoupled long-tailed recognition benchmarks (CE, cRT, LWS, tau-norm, SWA, SWAG, SWA + SRepr)."""


def options_for_methods(pairs: tuple[str, ...], methods: list[str]) -> dict[str, dict]:
    """``--option`` values per method: each option goes to the selected methods that declare it; a key that no
    selected method declares is an error (so a typo never silently does nothing)."""
    from ltbench.options import parse_cli_options
    from ltbench.registry import get_method
    given = parse_cli_options(pairs)
    per = {m: {k: v for k, v in given.items() if k in get_method(m).defaults} for m in methods}
    unused = sorted(set(given) - {k for opts in per.values() for k in opts})
    if unused:
        valid = sorted({k for m in methods for k in get_method(m).defaults})
        raise LtbenchError(f"--option {', '.join(unused)}: no selected method ({', '.join(methods)}) has "
                           f"{'this option' if len(unused) == 1 else 'these options'}; their options: "
                           f"{', '.join(valid) or 'none'} (see `bench.py list`)")
    return per


def _echo(quiet: bool):
    """Progress lines to stderr; ``quiet`` also silences the live progress inside epochs (``echo.quiet``)."""
    def echo(s: str) -> None:
        if not quiet:
            click.echo(s, err=True)
    echo.quiet = quiet  # type: ignore[attr-defined]
    return echo


@cli.command(epilog=EXAMPLES)
@click.option("--method", required=True, help="method name (see `bench.py list`), or `all` for the whole grid")
@click.option("--dataset", required=True, help="dataset name (see `bench.py list`)")
@click.option("--imbalance", type=int, default=None, help="imbalance factor (CIFAR-LT: 10, 50, 100, 200; default 100)")
@click.option("--stage1", "stage1_mode", type=click.Choice(["sgd", "swa"]), default="sgd", show_default=True,
              help="feature extractor: plain SGD, or SWA (which also collects SWAG moments)")
@click.option("--seed", type=SEED, default=0, show_default=True, help="integer in [0, 2^32)")
@click.option("--epochs", type=int, default=None, help="stage-1 epochs (fewer than the preset's = reduced schedule)")
@click.option("--stage2-epochs", type=int, default=None, help="stage-2 epochs (fewer than the preset's = reduced)")
@click.option("--preset", default=None, help="preset name or .toml path (default: the dataset's protocol)")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="method option, repeatable")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="folder holding the datasets (default: $LTBENCH_DATA_ROOT, else ./data)")
@output_folder_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--deterministic", is_flag=True, help="deterministic algorithms (same seed + device = same metrics)")
@click.option("--save-logits", is_flag=True, help="also store the [N, C] logits (log-probabilities) of the test set")
@click.option("--force", is_flag=True, help="run again even if the run folder is complete")
@click.option("--quiet", is_flag=True, help="no progress output")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch (default: all cores); recorded as environment.cpu_threads")
def run(method, dataset, imbalance, stage1_mode, seed, epochs, stage2_epochs, preset, options, data_root, results,
        device, deterministic, save_logits, force, quiet, threads) -> None:
    """Train (or reuse) stage 1, run a stage-2 method, evaluate, and write the run folder."""
    from ltbench.config import resolve
    from ltbench.registry import get_dataset, get_method, method_names
    from ltbench.report.summary import print_run_table
    from ltbench.distributed import shutdown
    from ltbench.runner import execute

    spec = get_dataset(dataset)
    if imbalance is None:
        imbalance = spec.default_imbalance
    elif not spec.imbalance_factors:
        raise LtbenchError(f"{dataset} is a fixed bundled subset; drop --imbalance")
    elif imbalance not in spec.imbalance_factors:
        raise LtbenchError(f"{dataset}: unsupported imbalance factor {imbalance}; supported: "
                           f"{', '.join(map(str, spec.imbalance_factors))}")
    if method == "all":
        grid = [(m, s) for s in ("sgd", "swa") for m in method_names() if s in get_method(m).stage1_modes]
    else:
        get_method(method).check_stage1(stage1_mode)
        grid = [(method, stage1_mode)]
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    per_method = options_for_methods(options, sorted({m for m, _ in grid}))
    # the whole grid's configs are resolved and validated before any compute
    cfgs = [resolve(m, dataset, imbalance, s, seed, preset or spec.preset, epochs=epochs,
                    stage2_epochs=stage2_epochs, method_options=per_method[m], data_root=data_root, results=results,
                    device=device, deterministic=deterministic, save_logits=save_logits) for m, s in grid]
    echo = _echo(quiet)
    outs = []
    for i, ((m, s), cfg) in enumerate(zip(grid, cfgs)):
        if len(grid) > 1:
            echo(f"[{i + 1}/{len(grid)}] {s}-{m}")
        outs.append(execute(cfg, echo=echo, force=force))
    print_run_table(outs)
    shutdown()  # under torchrun: every rank finished; leave the process group cleanly


@cli.command(name="list")
def list_cmd() -> None:
    """List methods, datasets (sizes and imbalance factors) and presets."""
    from ltbench.config import preset_names
    from ltbench.registry import dataset_names, get_dataset, get_method, method_names

    click.echo("methods (options: --option KEY=VALUE):")
    for m in method_names():
        cls = get_method(m)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        click.echo(f"  {m:<16} {cls.display()}  [--stage1 {'|'.join(cls.stage1_modes)}]"
                   + ("  [oracle: chooses on the test set]" if cls.oracle else ""))
        click.echo(f"  {'':<16} {doc}")
        for o in cls.option_specs:
            click.echo(f"  {'':<16}   {o.name} ({o.describe()}): {o.help}")
    click.echo("datasets:")
    for d in dataset_names():
        spec = get_dataset(d)
        ifs = ", ".join(map(str, spec.imbalance_factors)) or "fixed"
        click.echo(f"  {d:<17}  imbalance: {ifs:<16}  {spec.describe()}")
    click.echo("presets: " + ", ".join(preset_names()))


cli_extra.register(cli)  # the report, data, results and grid commands, defined beside their libraries

if __name__ == "__main__":
    cli()
