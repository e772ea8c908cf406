"""``bench.py run`` (one method, or ``--method all``, on one dataset) and ``bench.py list``."""
from __future__ import annotations

import click

from ..errors import LtbenchError
from .options import SEED, STAGE1_MODES, compile_option, options_for_methods, output_folder_option, \
    subset_seed_option, threads_option

EXAMPLES = """
\b
Examples:
  bench.py run --method ce --dataset cifar100-lt-tiny
  bench.py run --method crt --dataset cifar100-lt --imbalance 100 --stage1 swa --data-root ../shared/data
  bench.py run --method all --dataset cifar10-lt --imbalance 50 --seed 1 --data-root ../shared/data
  bench.py list
"""


def _echo(quiet: bool):
    """Progress lines to stderr; ``quiet`` also silences the live progress inside epochs (``echo.quiet``)."""
    def echo(s: str) -> None:
        if not quiet:
            click.echo(s, err=True)
    echo.quiet = quiet  # type: ignore[attr-defined]
    return echo


@click.command(epilog=EXAMPLES)
@click.option("--method", required=True, help="method name (see `bench.py list`), or `all` for the whole grid")
@click.option("--dataset", required=True, help="dataset name (see `bench.py list`)")
@click.option("--imbalance", type=int, default=None, help="imbalance factor (CIFAR-LT: 10, 50, 100, 200; default 100)")
@click.option("--stage1", "stage1_mode", type=click.Choice(STAGE1_MODES), default="sgd", show_default=True,
              help="feature extractor: plain SGD, or SWA (which also collects SWAG moments)")
@click.option("--seed", type=SEED, default=0, show_default=True, help="integer in [0, 2^32)")
@subset_seed_option
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
@threads_option
@compile_option
def run(method, dataset, imbalance, stage1_mode, seed, subset_seed, epochs, stage2_epochs, preset, options,
        data_root, results, device, deterministic, save_logits, force, quiet, threads, compile_) -> None:
    """Train (or reuse) stage 1, run a stage-2 method, evaluate, and write the run folder."""
    from ..config import resolve
    from ..distributed import shutdown
    from ..registry import get_dataset, get_method, method_names
    from ..report.summary import print_run_table
    from ..runner import execute

    spec = get_dataset(dataset)
    if imbalance is None:
        imbalance = spec.default_imbalance
    elif not spec.imbalance_factors:
        raise LtbenchError(f"{dataset} is a fixed bundled subset; drop --imbalance")
    elif imbalance not in spec.imbalance_factors:
        raise LtbenchError(f"{dataset}: unsupported imbalance factor {imbalance}; supported: "
                           f"{', '.join(map(str, spec.imbalance_factors))}")
    if method == "all":
        grid = [(m, s) for s in STAGE1_MODES for m in method_names() if s in get_method(m).stage1_modes]
    else:
        get_method(method).check_stage1(stage1_mode)
        grid = [(method, stage1_mode)]
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    per_method = options_for_methods(options, sorted({m for m, _ in grid}))
    # the whole grid's configs are resolved and validated before any compute
    cfgs = [resolve(m, dataset, imbalance, s, seed, preset or spec.preset, epochs=epochs,
                    stage2_epochs=stage2_epochs, subset_seed=subset_seed, compile=compile_,
                    method_options=per_method[m],
                    data_root=data_root, results=results, device=device, deterministic=deterministic,
                    save_logits=save_logits) for m, s in grid]
    echo = _echo(quiet)
    if len(cfgs) > 1:  # the data is checked once before the first of many runs (each execute loads it again:
        # CIFAR arrays come from a cache, split lists are re-read, a small cost next to any training)
        from ..data.load import load_run_data
        load_run_data(cfgs[0])
    outs = []
    for i, ((m, s), cfg) in enumerate(zip(grid, cfgs)):
        if len(grid) > 1:
            echo(f"[{i + 1}/{len(grid)}] {s}-{m}")
        outs.append(execute(cfg, echo=echo, force=force))
    print_run_table(outs)
    shutdown()  # under torchrun: every rank finished; leave the process group cleanly


@click.command(name="list")
def list_cmd() -> None:
    """List methods, datasets (sizes and imbalance factors) and presets."""
    from ..config import preset_names
    from ..registry import dataset_names, get_dataset, get_method, method_names

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
