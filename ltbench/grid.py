"""``bench.py grid``: plan, project and run the whole CIFAR-LT protocol grid, resumably.

The grid is datasets x imbalance factors x seeds x (stage-1 extractor, stage-2 method). Runs that share a stage-1
artifact (same dataset, IF, seed and extractor) form one *group* and run back to back in one process, so stage 1
trains once and every method of the group reuses the cached network (and the cached SWAG-pool features).
Finished run folders are skipped (``store.is_complete``), a killed stage 1 resumes from its per-epoch checkpoint,
so *resume = run the same command again*.

Before anything runs, the plan and a projected wall time are printed. The projection comes from a short timed
calibration on the actual device (a few training steps and evaluation batches of the real network on the real
data pipeline), not from assumed numbers.

Batched stage 1 (``--batched``, on by default when the device is CUDA): the pending stage-1 networks that share a
dataset, imbalance factor and shape (3 seeds x SGD/SWA) are trained first, together, as one stacked network
(``ltbench/train/batched.py``), up to ``--stack-max`` at a time; each network's ``final.pt`` lands where its own
stage 1 would have written it, so the runs of each group then reuse it as a cached artifact.

``--jobs K`` runs K worker processes, each taking whole groups, to share one GPU that a single ResNet-32 run
cannot fill; on a CPU each worker gets ``cores // K`` threads. Whether that helps is a measurement (see
docs/performance.md), not an assumption.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import torch

from .cli_options import SEEDS, output_folder_option
from .config import RunConfig, default_output_dir, resolve
from .errors import LtbenchError
from .registry import get_dataset, get_method, method_names
from .store import is_complete, run_dir
from .train.stage1 import stage1_dir

Echo = Callable[[str], None]
DEFAULT_DATASETS = ("cifar10-lt", "cifar100-lt")
DEFAULT_IMBALANCE = (10, 50, 100)
DEFAULT_SEEDS = (0, 1, 2)
# SWAG pool cost in extractor passes over the train set per member: one BN-recompute pass (augmented) plus the
# train and test feature passes; used only for the projection.
POOL_PASSES_PER_MEMBER = 1.0


@dataclass
class PlannedRun:
    cfg: RunConfig
    out: Path
    done: bool
    conflict: str | None = None  # the folder holds a finished run with a different config (see runner)


@dataclass
class Group:
    """Runs sharing one stage-1 artifact: stage 1 trains (or resumes) once, then each method runs."""

    key: tuple
    runs: list[PlannedRun] = field(default_factory=list)

    @property
    def pending(self) -> list[PlannedRun]:
        return [r for r in self.runs if not r.done]

    @property
    def stage1_cached(self) -> bool:  # the folder name ends in -d<data fingerprint>, known only once data is loaded
        d = stage1_dir(self.runs[0].cfg)
        return any(d.parent.glob(f"{d.name}-d*/final.pt"))


def method_grid(methods: list[str] | None = None) -> list[tuple[str, str]]:
    """(method, stage-1 mode) pairs as ``run --method all`` forms them: SWAG-based methods only on SWA.

    ``methods`` restricts the grid to those methods (default: every registered method)."""
    names = method_names()
    if methods:
        for m in methods:
            get_method(m)  # clear error for an unknown name
        names = [m for m in names if m in methods]
    return [(m, s) for s in ("sgd", "swa") for m in names if not (get_method(m).requires_swag and s != "swa")]


def build_plan(datasets: list[str], imbalances: list[int], seeds: list[int], epochs: int | None = None,
               stage2_epochs: int | None = None, preset: str | None = None, data_root: str | None = None,
               results: str | None = None, device: str = "auto", methods: list[str] | None = None) -> list[Group]:
    """Every run of the grid, grouped by stage-1 artifact, in a stable order (dataset, IF, seed, extractor).

    ``results`` defaults to :func:`default_output_dir`, as on the command line."""
    results = results or default_output_dir()
    from .runner import finished_run_differs

    groups: dict[tuple, Group] = {}
    for ds in datasets:
        spec = get_dataset(ds)
        ifs: list[int | None] = list(imbalances) if spec.imbalance_factors else [None]
        for imb in ifs:
            if imb is not None and imb not in spec.imbalance_factors:
                raise LtbenchError(f"{ds}: unsupported imbalance factor {imb}; supported: "
                                   f"{', '.join(map(str, spec.imbalance_factors))}")
            for seed in seeds:
                for method, mode in method_grid(methods):
                    cfg = resolve(method, ds, imb, mode, seed, preset or spec.preset, epochs=epochs,
                                  stage2_epochs=stage2_epochs, data_root=data_root, results=results, device=device)
                    out = run_dir(results, cfg.dataset_tag, cfg.run_name, seed)
                    key = (ds, imb, seed, mode, cfg.stage1_key())
                    complete = is_complete(out)
                    conflict = finished_run_differs(cfg, out) if complete else None
                    groups.setdefault(key, Group(key)).runs.append(
                        PlannedRun(cfg, out, complete and conflict is None, conflict))
    return list(groups.values())


# ----------------------------------------------------------------------------------------------- projection


@dataclass
class Throughput:
    """Measured images/s of one training step and of one evaluation (forward) pass on the device."""

    train_img_s: float
    eval_img_s: float
    device: str
    how: str


def calibrate(cfg: RunConfig, data, device: torch.device, steps: int = 6, warmup: int = 2) -> Throughput:
    """Time ``steps`` real stage-1 training steps and evaluation batches (after ``warmup``) on ``device``.

    Uses the same network, batch size, augmentation, channels_last and autocast as stage 1 (without compile:
    compile time would dominate a calibration), so the projection reflects this machine at this moment.
    """
    from .models import create_network
    from .train.loop import autocast_for, cross_entropy_step, sgd

    s = cfg.stage1
    net = create_network(s.arch, data.num_classes).to(device)
    if s.channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = sgd(net.parameters(), s)
    step = cross_entropy_step(net, device, s.channels_last)
    gen = torch.Generator().manual_seed(0)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def batches():
        while True:
            yield from data.train_batches(s.batch_size, gen, device)

    it = batches()
    net.train()
    seen, t0 = 0, 0.0
    for i in range(warmup + steps):
        if i == warmup:
            sync()
            t0, seen = time.perf_counter(), 0
        with autocast_for(device, cfg.stage1_precision(device)):
            loss, _, n = step(next(it))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += n
    sync()
    train_rate = seen / max(time.perf_counter() - t0, 1e-9)
    net.eval()
    seen = 0
    with torch.no_grad():
        ev = data.eval_batches("test", cfg.eval_batch_size, device)
        xs = [x for _, (x, _) in zip(range(warmup + steps), ev)]
        for i, x in enumerate(xs):
            if i == warmup:
                sync()
                t0, seen = time.perf_counter(), 0
            if s.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, cfg.stage1_precision(device)):
                net(x)
            seen += len(x)
        sync()
    eval_rate = seen / max(time.perf_counter() - t0, 1e-9) if len(xs) > warmup else 3.0 * train_rate
    return Throughput(train_rate, eval_rate, str(device), f"{steps} timed steps after {warmup} warm-up")


def calibrate_stacked(cfg: RunConfig, data, device: torch.device, m: int, steps: int = 6, warmup: int = 2
                      ) -> float:
    """Aggregate training images/s of ``m`` stage-1 networks trained as one stacked network on ``device``."""
    from .train.batched import stacked_steps

    run = stacked_steps(data, device, m, cfg.stage1.batch_size, cfg.stage1.channels_last,
                        cfg.stage1_precision(device))
    run(warmup)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    seen = run(steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / max(time.perf_counter() - t0, 1e-9)


def project_group_seconds(group: Group, n_train: int, n_test: int, tp: Throughput) -> float:
    """Projected seconds for the pending work of ``group`` at throughput ``tp``.

    Stage 1: epochs x train images at the training rate (skipped when its artifact is cached). SWAG pool (once
    per group, when a SWAG method is pending): per member, one BN pass plus train + test features at the eval
    rate. Frozen features: one train + test pass. Head training on cached features is negligible next to these.
    """
    pending = group.pending
    if not pending:
        return 0.0
    cfg = pending[0].cfg
    sec = 0.0
    if not group.stage1_cached:
        sec += cfg.stage1.epochs * n_train / tp.train_img_s
        if cfg.stage1_mode == "swa":
            sec += n_train / tp.eval_img_s  # BN recompute of the SWA average
    sec += (n_train + n_test) / tp.eval_img_s  # base features
    pool_sizes = {int({**get_method(r.cfg.method).defaults, **r.cfg.method_options}.get("pool_size", 8))
                  for r in pending if get_method(r.cfg.method).requires_swag}
    if pool_sizes:
        sec += max(pool_sizes) * (n_train + n_train + n_test) / tp.eval_img_s
    sec += len(pending) * (n_test / tp.eval_img_s)  # evaluation of each run (un-cached predictors)
    return sec


def fmt_s(sec: float) -> str:
    sec = max(0.0, sec)
    h, rem = divmod(int(round(sec)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


# ----------------------------------------------------------------------------------------------- execution


def _run_group(group: Group, echo: Echo) -> list[tuple[PlannedRun, float, str | None]]:
    """Run the pending runs of one group in order; return (run, seconds, error or None) per run."""
    from .runner import execute

    out = []
    for r in group.pending:
        t0 = time.perf_counter()
        try:
            execute(r.cfg, echo=echo, force=r.conflict is not None)
            err = None
        except LtbenchError as e:
            err = str(e)
        out.append((r, time.perf_counter() - t0, err))
    return out


def _worker(units: list[list[Group]], threads: int, q, verbose: bool, batched: bool = False) -> None:
    """Worker process for ``--jobs``: run its units of groups (training a unit's stage 1 together when
    ``batched``) and report each finished run on ``q``."""
    if threads > 0:
        torch.set_num_threads(threads)
    from .runner import execute

    pid = os.getpid()
    echo = (lambda s: click.echo(f"  [pid {pid}] {s}", err=True)) if verbose else (lambda s: None)
    for unit in units:
        if batched:
            train_stack(unit, lambda s: click.echo(f"  [pid {pid}] {s}", err=True))
        for r in (r for g in unit for r in g.pending):
            t0 = time.perf_counter()
            try:
                execute(r.cfg, echo=echo, force=r.conflict is not None)
                err = None
            except Exception as e:  # noqa: BLE001 - report and go on with the next run
                err = f"{type(e).__name__}: {e}"
            q.put((str(r.out), time.perf_counter() - t0, err))
    q.put(None)


def split_groups(groups: list[Group], jobs: int, cost: Callable[[Group], float]) -> list[list[Group]]:
    """Greedy longest-first assignment of whole groups to ``jobs`` workers (balances projected seconds)."""
    bins: list[list[Group]] = [[] for _ in range(jobs)]
    load = [0.0] * jobs
    for g in sorted(groups, key=cost, reverse=True):
        i = load.index(min(load))
        bins[i].append(g)
        load[i] += cost(g)
    return [b for b in bins if b]


def stage1_stacks(groups: list[Group], stack_max: int) -> list[list[Group]]:
    """Units of work for batched stage 1: pending groups whose stage-1 networks can train as one stacked network
    (same ``batch_key``), at most ``stack_max`` per unit, in plan order; every other pending group is a unit
    of its own (cached stage 1, or an architecture that cannot be stacked)."""
    from .train.batched import batch_key, can_batch

    units: list[list[Group]] = []
    open_: dict[tuple, list[Group]] = {}
    for g in groups:
        if not g.pending:
            continue
        cfg = g.runs[0].cfg
        if g.stage1_cached or not can_batch(cfg):
            units.append([g])
            continue
        k = batch_key(cfg)
        if k not in open_ or len(open_[k]) >= stack_max:
            open_[k] = []
            units.append(open_[k])
        open_[k].append(g)
    return units


def train_stack(unit: list[Group], echo: Echo) -> None:
    """Train the stage 1 of every group in ``unit`` together (a no-op for a one-group unit whose stage 1 is
    cached). A failure is reported and left to the runs: each then trains its own stage 1 alone."""
    todo = [g for g in unit if not g.stage1_cached]
    if len(todo) < 2:
        return
    from .registry import get_dataset
    from .runner import resolve_device, set_determinism
    from .train.batched import train_stage1_batched

    cfgs = [g.runs[0].cfg for g in todo]
    c = cfgs[0]
    spec = get_dataset(c.dataset)
    t0 = time.perf_counter()
    try:
        data = spec.load(c.data_root, c.imbalance, **c.data) if c.data else spec.load(c.data_root, c.imbalance)
        set_determinism(c.seed, c.deterministic)
        train_stage1_batched(cfgs, data, resolve_device(c.device), echo)
    except LtbenchError as e:
        echo(f"stage 1 batched: {len(cfgs)} networks of {c.dataset_tag} failed ({e}); their runs train them alone")
        return
    echo(f"stage 1 batched: {len(cfgs)} networks of {c.dataset_tag} "
         f"({' '.join(f'{x.stage1_mode}/seed{x.seed}' for x in cfgs)}) in {fmt_s(time.perf_counter() - t0)}")


def run_grid(groups: list[Group], jobs: int, projected: dict[tuple, float], echo: Echo, verbose: bool = False,
             batched: bool = False, stack_max: int = 12) -> dict:
    """Run every pending run; print ``[i/N] ... elapsed, ETA`` after each. Returns counts and wall time."""
    todo = [g for g in groups if g.pending]
    total = sum(len(g.pending) for g in todo)
    proj_total = sum(projected[g.key] for g in todo) or 1.0
    by_out = {str(r.out): (g, r) for g in todo for r in g.pending}
    t0 = time.perf_counter()
    done, failed = 0, []
    done_proj = 0.0

    def report(out: str, secs: float, err: str | None) -> None:
        nonlocal done, done_proj
        done += 1
        g, r = by_out[out]
        done_proj += projected[g.key] / max(len(g.pending), 1)
        elapsed = time.perf_counter() - t0
        # ETA: remaining projected work, rescaled by how fast the projection has been so far
        rate = elapsed / done_proj if done_proj > 0 else 1.0
        eta = max(proj_total - done_proj, 0.0) * rate
        status = "FAILED: " + err if err else f"{secs:.1f}s"
        if err:
            failed.append((out, err))
        echo(f"[{done}/{total}] {r.cfg.dataset_tag} {r.cfg.run_name} seed{r.cfg.seed}  {status}  "
             f"elapsed {fmt_s(elapsed)}  ETA {fmt_s(eta)}")

    units = stage1_stacks(todo, stack_max) if batched else [[g] for g in todo]
    if jobs <= 1 or len(units) <= 1:
        inner = (lambda s: echo(f"  {s}")) if verbose else (lambda s: None)
        for unit in units:
            if batched:
                train_stack(unit, echo)
            for g in unit:
                for r in g.pending:
                    (res,) = _run_group(Group(g.key, [r]), inner)
                    report(str(res[0].out), res[1], res[2])
    else:
        import multiprocessing as mp
        ctx = mp.get_context("spawn")  # CUDA cannot be forked; spawn is safe on every platform
        q = ctx.Queue()
        cost = lambda u: sum(projected[g.key] for g in u)  # noqa: E731
        shards = split_groups(units, jobs, cost)  # whole units: a stack trains in one worker
        threads = max(1, (os.cpu_count() or 1) // len(shards))
        procs = [ctx.Process(target=_worker, args=(s, threads, q, verbose, batched), daemon=False) for s in shards]
        for p in procs:
            p.start()
        alive = len(procs)
        while alive:
            try:
                msg = q.get(timeout=5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    break
                continue
            if msg is None:
                alive -= 1
            else:
                report(*msg)
        for p in procs:
            p.join()
        if done < total:
            failed.append(("(worker)", f"{total - done} runs were not reported; a worker process died"))
    return {"runs": total, "done": done, "failed": failed, "seconds": time.perf_counter() - t0}


def print_plan(groups: list[Group], echo: Echo) -> None:
    n_runs = sum(len(g.runs) for g in groups)
    n_done = sum(len(g.runs) - len(g.pending) for g in groups)
    n_s1 = sum(1 for g in groups if g.pending and not g.stage1_cached)
    echo(f"grid: {n_runs} runs in {len(groups)} stage-1 groups; {n_done} already complete (skipped), "
         f"{n_runs - n_done} to run; {n_s1} stage-1 trainings needed")
    for g in groups:
        ds, imb, seed, mode, _ = g.key
        tag = f"{ds}" + (f"-if{imb}" if imb is not None else "")
        state = "done" if not g.pending else ("stage 1 cached" if g.stage1_cached else "stage 1 to train")
        echo(f"  {tag:<18} seed{seed} {mode:<3}  {len(g.runs) - len(g.pending)}/{len(g.runs)} done  ({state})")


def _csv(kind: type, text: str) -> list:
    try:
        return [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise LtbenchError(f"cannot parse {text!r} as a comma-separated list of {kind.__name__}") from None


def register(cli: click.Group) -> None:
    """Add the ``grid`` command to the ``bench.py`` click group."""

    @cli.command()
    @click.option("--datasets", default=",".join(DEFAULT_DATASETS), show_default=True)
    @click.option("--imbalance", default=",".join(map(str, DEFAULT_IMBALANCE)), show_default=True,
                  help="imbalance factors (ignored for the fixed tiny sets)")
    @click.option("--seeds", type=SEEDS, default=",".join(map(str, DEFAULT_SEEDS)), show_default=True)
    @click.option("--methods", default="", help="comma-separated methods (default: every registered method)")
    @click.option("--epochs", type=int, default=None, help="stage-1 epochs (fewer than the preset's = reduced)")
    @click.option("--stage2-epochs", type=int, default=None)
    @click.option("--preset", default=None, help="preset for every dataset (default: each dataset's protocol)")
    @click.option("--data-root", type=click.Path(file_okay=False), default=None)
    @output_folder_option
    @click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
    @click.option("--jobs", type=int, default=1, show_default=True,
                  help="concurrent worker processes (share one GPU; on CPU the cores are split)")
    @click.option("--batched/--no-batched", default=None,
                  help="train the stage-1 networks of one dataset and IF together as one stacked network "
                       "(default: on for CUDA, off for CPU)")
    @click.option("--stack-max", type=int, default=12, show_default=True,
                  help="at most this many stage-1 networks in one stacked network (with --batched)")
    @click.option("--calibration-steps", type=int, default=6, show_default=True,
                  help="timed training steps for the projection (0: no projection)")
    @click.option("--dry-run", is_flag=True, help="print the plan and the projection, run nothing")
    @click.option("--verbose", is_flag=True, help="also show each run's own progress lines")
    @click.option("--replace", is_flag=True,
                  help="re-run and replace finished runs whose config differs (e.g. reduced runs in a full grid)")
    def grid(datasets, imbalance, seeds, methods, epochs, stage2_epochs, preset, data_root, results, device, jobs,
             batched, stack_max, calibration_steps, dry_run, verbose, replace) -> None:
        """Plan, project and run the full protocol grid (resumable: run it again to continue)."""
        from .runner import resolve_device

        echo = lambda s: click.echo(s, err=True)  # noqa: E731
        if jobs < 1:
            raise LtbenchError("--jobs must be at least 1")
        if stack_max < 1:
            raise LtbenchError("--stack-max must be at least 1")
        groups = build_plan(_csv(str, datasets), _csv(int, imbalance), seeds, epochs, stage2_epochs,
                            preset, data_root, results, device, _csv(str, methods) or None)
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
        projected: dict[tuple, float] = {g.key: 0.0 for g in groups}
        todo = [g for g in groups if g.pending]
        if todo and calibration_steps > 0:
            rates: dict[tuple, Throughput] = {}
            sizes: dict[tuple, tuple[int, int]] = {}
            for g in todo:
                cfg = g.runs[0].cfg
                spec = get_dataset(cfg.dataset)
                # throughput depends on the network and batch, not on the imbalance factor: calibrate once each
                rk = (cfg.stage1.arch, cfg.stage1.batch_size, spec.num_classes)
                sk = (cfg.dataset, cfg.imbalance)
                if rk not in rates or sk not in sizes:
                    data = spec.load(cfg.data_root, cfg.imbalance)
                    sizes[sk] = (len(data.train_labels), len(data.test_labels))
                    if rk not in rates:
                        tp = rates[rk] = calibrate(cfg, data, dev, steps=calibration_steps)
                        echo(f"calibration {cfg.stage1.arch} {spec.num_classes} classes on {tp.device}: "
                             f"{tp.train_img_s:,.0f} train img/s, {tp.eval_img_s:,.0f} eval img/s ({tp.how})")
                projected[g.key] = project_group_seconds(g, *sizes[sk], rates[rk])
            if batched:  # stage 1 of a stack: each network at the stack's aggregate rate
                stacked: dict[tuple, float] = {}
                for unit in stage1_stacks(todo, stack_max):
                    pend = [g for g in unit if not g.stage1_cached]
                    if len(pend) < 2:
                        continue
                    cfg = pend[0].runs[0].cfg
                    spec = get_dataset(cfg.dataset)
                    rk = (cfg.stage1.arch, cfg.stage1.batch_size, spec.num_classes)
                    sk = (cfg.dataset, cfg.imbalance)
                    if rk + (len(pend),) not in stacked:
                        data = spec.load(cfg.data_root, cfg.imbalance)
                        agg = stacked[rk + (len(pend),)] = calibrate_stacked(cfg, data, dev, len(pend),
                                                                             calibration_steps)
                        echo(f"calibration: {len(pend)} stacked {cfg.stage1.arch} on {dev}: {agg:,.0f} train img/s "
                             f"together ({agg / rates[rk].train_img_s:.2f}x one network's)")
                    for g in pend:
                        projected[g.key] = project_group_seconds(
                            g, *sizes[sk], dataclasses.replace(rates[rk], train_img_s=stacked[rk + (len(pend),)]))
            serial = sum(projected.values())
            echo(f"projected wall time: {fmt_s(serial)} for one process"
                 + (f"; with --jobs {jobs}, at best {fmt_s(serial / jobs)} if the device scales "
                    f"(it may not: measure)" if jobs > 1 else ""))
        if dry_run or not todo:
            if not todo:
                echo("nothing to run: every run of the grid is complete")
            return
        if batched:
            echo(f"stage 1: batched (stacks of up to {stack_max} networks of one dataset and IF)")
        res = run_grid(groups, jobs, projected, echo, verbose, batched, stack_max)
        echo(f"grid finished: {res['done']}/{res['runs']} runs in {fmt_s(res['seconds'])}"
             + (f", {len(res['failed'])} failed" if res["failed"] else ""))
        for out, err in res["failed"]:
            echo(f"  failed: {out}: {err}")
        if res["failed"]:
            raise LtbenchError(f"{len(res['failed'])} grid runs failed; fix the cause and run the same command "
                               "again (finished runs are skipped)")
