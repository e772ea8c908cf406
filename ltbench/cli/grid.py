"""``bench.py grid``: the command; planning, projection and execution live in ``ltbench/grid.py``.

It speaks ``run``'s vocabulary (``--dataset``, ``--imbalance``, ``--seed``, ``--method``, ``--stage1``,
``--option``, ``--deterministic``, ``--threads``, ``--quiet``), each list option repeatable or a comma list.
"""
from __future__ import annotations

import click

from ..errors import LtbenchError
from .options import DATASETS, IMBALANCES, METHODS, SEEDS, STAGE1_MODES, STAGE1S, compile_option, list_option, \
    options_for_methods, output_folder_option, subset_seed_option, threads_option

DEFAULT_DATASETS = ("cifar10-lt", "cifar100-lt")  # the CIFAR-LT protocol grid
DEFAULT_IMBALANCE = (10, 50, 100)
DEFAULT_SEEDS = (0, 1, 2)

EXAMPLES = """
\b
Examples:
  bench.py grid --data-root ../shared/data --dry-run
  bench.py grid --data-root ../shared/data --seed 0,1,2
  bench.py grid --dataset cifar10-lt-tiny --seed 0 --method ce --method crt --stage1 sgd --epochs 2
"""


@click.command(epilog=EXAMPLES)
@list_option("--dataset", "datasets", type=DATASETS, default=DEFAULT_DATASETS,
             help="datasets (each list option: repeatable, or a comma list)")
@list_option("--imbalance", "imbalances", type=IMBALANCES, default=DEFAULT_IMBALANCE,
             help="imbalance factors (ignored for the fixed tiny sets)")
@list_option("--seed", "seeds", type=SEEDS, default=DEFAULT_SEEDS, help="seeds, each an integer in [0, 2^32)")
@list_option("--method", "methods", type=METHODS,
             help="methods (default, or `all`: every registered method, each on the extractors it runs on)")
@list_option("--stage1", "stage1_modes", type=STAGE1S, default=STAGE1_MODES,
             help="feature extractors to train: sgd, swa (SWAG-based methods run on swa only)")
@subset_seed_option
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE",
              help="method option, repeatable; goes to every selected method that has it")
@click.option("--epochs", type=int, default=None, help="stage-1 epochs (fewer than the preset's = reduced)")
@click.option("--stage2-epochs", type=int, default=None)
@click.option("--preset", default=None, help="preset for every dataset (default: each dataset's protocol)")
@click.option("--data-root", type=click.Path(file_okay=False), default=None)
@output_folder_option
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--deterministic", is_flag=True, help="deterministic algorithms (same seed + device = same metrics)")
@threads_option
@compile_option
@click.option("--jobs", type=int, default=1, show_default=True,
              help="concurrent worker processes (share one GPU; on CPU the cores are split)")
@click.option("--batched/--no-batched", default=None,
              help="train the stage-1 networks of one dataset and IF together as one stacked network "
                   "(default: on for CUDA, off for CPU)")
@click.option("--stack-max", type=int, default=12, show_default=True,
              help="at most this many stage-1 networks in one stacked network (with --batched)")
@click.option("--calibration-steps", type=int, default=6, show_default=True,
              help="timed training steps for the projection (0: no projection)")
@click.option("--time-budget", default=None, metavar="DURATION",
              help="start only the stage-1 groups projected to finish within DURATION (e.g. 2h30m, 90m, 5400), "
                   "in plan order; the rest are listed and left for a later run (needs the calibration)")
@click.option("--dry-run", is_flag=True, help="print the plan and the projection, run nothing")
@click.option("--verbose", is_flag=True, help="also show each run's own progress lines")
@click.option("--quiet", is_flag=True, help="no plan, calibration or progress output (errors and the final line only)")
@click.option("--replace", is_flag=True,
              help="re-run and replace finished runs whose config differs (e.g. reduced runs in a full grid)")
def grid(datasets, imbalances, seeds, methods, stage1_modes, subset_seed, options, epochs, stage2_epochs, preset,
         data_root, results, device, deterministic, threads, compile_, jobs, batched, stack_max, calibration_steps,
         time_budget, dry_run, verbose, quiet, replace) -> None:
    """Plan, project and run the full protocol grid (resumable: run it again to continue)."""
    import time
    t_start = time.perf_counter()  # a --time-budget counts from here: planning and calibration spend it too
    from ..grid import (build_plan, fit_time_budget, fmt_s, group_label, method_grid, parse_time_budget, print_plan,
                        project_grid, run_grid, stage1_stacks)
    from ..progress import plural
    from ..runner import resolve_device

    def say(s: str) -> None:
        click.echo(s, err=True)

    echo = say if (dry_run or not quiet) else (lambda s: None)  # a dry run's plan is its output
    if jobs < 1:
        raise LtbenchError("--jobs must be at least 1")
    if stack_max < 1:
        raise LtbenchError("--stack-max must be at least 1")
    budget_s = parse_time_budget(time_budget) if time_budget is not None else None
    if budget_s is not None and calibration_steps <= 0:
        raise LtbenchError("--time-budget needs the projection, which --calibration-steps 0 turns off; "
                           "leave --calibration-steps at its default (6) or drop --time-budget")
    per_method = options_for_methods(options, sorted({m for m, _ in method_grid(methods, stage1_modes)}))
    groups = build_plan(datasets, imbalances, seeds, epochs, stage2_epochs, preset, data_root, results, device,
                        methods, stage1_modes=stage1_modes, method_options=per_method, deterministic=deterministic,
                        subset_seed=subset_seed, compile=compile_)
    print_plan(groups, echo)
    conflicts = [r for g in groups for r in g.runs if r.conflict]
    if conflicts:
        for r in conflicts[:10]:
            echo(f"  differs: {r.out}: {r.conflict}")
        if len(conflicts) > 10:
            echo(f"  ... and {len(conflicts) - 10} more")
        if not replace and not dry_run:
            raise LtbenchError(f"{len(conflicts)} finished run folder(s) hold a run with a different config than "
                               "this grid's (listed above); pass --replace to re-run and replace them, or "
                               "--results DIR to write the grid elsewhere")
    dev = resolve_device(device)
    batched = dev.type == "cuda" if batched is None else batched
    if threads is not None and jobs == 1:  # before the calibration, which times this process
        import torch
        torch.set_num_threads(threads)
    projected = project_grid(groups, dev, calibration_steps, batched, stack_max, echo, weights=not dry_run)
    todo = [g for g in groups if g.pending]
    if todo and calibration_steps > 0:
        serial = projected.total(todo)
        echo(f"projected wall time: {fmt_s(serial)} for one process"
             + (f"; with --jobs {jobs}, at best {fmt_s(serial / jobs)} if the device scales "
                f"(it may not: measure)" if jobs > 1 else ""))
    left = []
    if todo and budget_s is not None:  # said even under --quiet: what it leaves out is part of the result
        units = stage1_stacks(todo, stack_max) if batched else [[g] for g in todo]
        budget_left = budget_s - (time.perf_counter() - t_start)
        chosen, left = fit_time_budget(units, projected, budget_left)
        say(f"time budget {fmt_s(budget_s)}: {len(chosen)} of {plural(len(todo), 'pending group')} fit "
            f"(projected {fmt_s(projected.total(chosen))}) in the {fmt_s(budget_left)} left after planning "
            "and calibration")
        for g in left:
            say(f"  left for a later run: {group_label(g)} (projected {fmt_s(projected.group(g))})")
        if not chosen:
            say("nothing started: no pending group is projected to finish within the time budget")
            return
        groups = chosen
        todo = chosen
    if dry_run or not todo:
        if not todo:
            echo("nothing to run: every run of the grid is complete")
        return
    if batched:
        echo(f"stage 1: batched (stacks of up to {stack_max} networks of one dataset and IF)")
    res = run_grid(groups, jobs, projected, echo, verbose, batched, stack_max, quiet=quiet, threads=threads)
    say(f"grid finished: {res['done']}/{res['runs']} runs in {fmt_s(res['seconds'])}"
        + (f", {len(res['failed'])} failed" if res["failed"] else "")
        + (f"; {plural(len(left), 'group')} left for a later run (time budget)" if left else ""))
    for out, err in res["failed"]:
        say(f"  failed: {out}: {err}")
    if res["failed"]:
        raise LtbenchError(f"{len(res['failed'])} grid runs failed; fix the cause and run the same command "
                           "again (finished runs are skipped)")
