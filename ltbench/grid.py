"""Plan, project and run the whole CIFAR-LT protocol grid, resumably (the library of ``bench.py grid``, whose
command is ``ltbench/cli/grid.py``).

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
import json
import os
import queue
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .checkpoint import load_checkpoint
from .config import STAGE1_MODES, RunConfig, default_output_dir, resolve
from .data.load import load_run_data
from .errors import LtbenchError
from .paths import run_dir_for, stage1_cached, stage1_candidates
from .progress import ACTIVITY, EVERY_S, Progress, plural
from .registry import get_dataset, get_method, method_names
from .store import is_complete

Echo = Callable[[str], None]


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
    def stage1_cached(self) -> bool:  # any data fingerprint: the one of the data is known only once it is loaded
        return stage1_cached(self.runs[0].cfg)

    def stage1_epochs_done(self) -> int:
        """Epochs a killed stage 1 of this group has checkpointed (0 when none), so a projection counts only the
        epochs left. A checkpoint that cannot be read counts as none here; the run itself reports it."""
        done = 0
        for d in stage1_candidates(self.runs[0].cfg):
            try:
                ck = load_checkpoint(d / "ckpt.pt")
            except LtbenchError:  # unreadable: nothing to resume from
                continue
            if ck is not None:
                done = max(done, int(ck.get("epoch", 0)))
        return done


def method_grid(methods: list[str] | None = None, stage1_modes: tuple[str, ...] | list[str] = STAGE1_MODES
                ) -> list[tuple[str, str]]:
    """(method, stage-1 mode) pairs as ``run --method all`` forms them: each method on the extractors it runs on
    (SWAG-based methods only on SWA).

    ``methods`` restricts the grid to those methods (default, or ``all``: every registered method) and
    ``stage1_modes`` to those extractors; a method named explicitly that runs on none of them is an error (it
    would silently plan nothing)."""
    for s in stage1_modes:
        if s not in STAGE1_MODES:
            raise LtbenchError(f"unknown --stage1 {s!r}; valid: {', '.join(STAGE1_MODES)}")
    names = method_names()
    if methods and "all" not in methods:
        for m in methods:
            cls = get_method(m)  # clear error for an unknown name
            if not set(cls.stage1_modes) & set(stage1_modes):
                cls.check_stage1(stage1_modes[0])  # raises, naming the extractor it needs
        names = [m for m in names if m in methods]
    return [(m, s) for s in STAGE1_MODES if s in stage1_modes for m in names if s in get_method(m).stage1_modes]


def build_plan(datasets: list[str], imbalances: list[int], seeds: list[int], epochs: int | None = None,
               stage2_epochs: int | None = None, preset: str | None = None, data_root: str | None = None,
               results: str | None = None, device: str = "auto", methods: list[str] | None = None,
               stage1_modes: tuple[str, ...] | list[str] = STAGE1_MODES,
               method_options: dict[str, dict] | None = None, deterministic: bool = False,
               subset_seed: int = 0, compile: bool | None = None) -> list[Group]:
    """Every run of the grid, grouped by stage-1 artifact, in a stable order (dataset, IF, seed, extractor).

    Every config is resolved (and so validated) here, before any compute. ``method_options``: per method, the
    ``--option`` values it takes (see ``ltbench.cli.options.options_for_methods``). ``results`` defaults to
    :func:`default_output_dir`, as on the command line."""
    results = results or default_output_dir()
    method_options = method_options or {}
    from .runner import finished_data_differs, finished_run_differs

    if subset_seed:  # a subset seed the data root cannot serve is refused before the plan is shown
        for ds in datasets:
            check = getattr(get_dataset(ds), "check_subset_seed", None)
            if check is not None:
                check(data_root, subset_seed)
    loaded: dict[tuple, str] = {}

    def fingerprint(cfg: RunConfig) -> str:
        """The training data's fingerprint, loaded once per dataset and load options over the whole plan (the
        split-list loaders are not cached, and every finished run of a setting checks the same data)."""
        key = (cfg.dataset, cfg.imbalance, cfg.subset_seed, cfg.data_root, json.dumps(cfg.data or {}, sort_keys=True))
        if key not in loaded:
            from .data.load import load_run_data
            loaded[key] = load_run_data(cfg).fingerprint()
        return loaded[key]

    groups: dict[tuple, Group] = {}
    for ds in datasets:
        spec = get_dataset(ds)
        ifs: list[int | None] = list(imbalances) if spec.imbalance_factors else [None]
        for imb in ifs:
            if imb is not None and imb not in spec.imbalance_factors:
                raise LtbenchError(f"{ds}: unsupported imbalance factor {imb}; supported: "
                                   f"{', '.join(map(str, spec.imbalance_factors))}")
            for seed in seeds:
                for method, mode in method_grid(methods, stage1_modes):
                    cfg = resolve(method, ds, imb, mode, seed, preset or spec.preset, epochs=epochs,
                                  stage2_epochs=stage2_epochs, subset_seed=subset_seed, compile=compile,
                                  method_options=method_options.get(method, {}), data_root=data_root,
                                  results=results, device=device, deterministic=deterministic)
                    out = run_dir_for(cfg, results)
                    key = (ds, imb, seed, mode, cfg.stage1_key())
                    complete = is_complete(out)
                    conflict = (finished_run_differs(cfg, out) or finished_data_differs(cfg, out, fingerprint)
                                if complete else None)
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


@dataclass
class Projection:
    """Projected seconds of each pending run of a grid, keyed by run folder (see :func:`project_parts`):
    ``runs`` the whole share, ``own`` the part no other run would do (its evaluation), ``stage1`` the stage-1 part
    of a group's first run.

    ``calibrated`` False: nothing was timed (``--calibration-steps 0``) and the shares are relative weights at
    :data:`NOMINAL_THROUGHPUT`, which order the work for the ETA but are not seconds."""

    runs: dict[str, float] = field(default_factory=dict)
    calibrated: bool = True
    own: dict[str, float] = field(default_factory=dict)
    stage1: dict[str, float] = field(default_factory=dict)

    def group(self, g: Group) -> float:
        return sum(self.runs.get(str(r.out), 0.0) for r in g.pending)

    def run(self, r: PlannedRun) -> float:
        return self.runs.get(str(r.out), 0.0)

    def total(self, groups: list[Group]) -> float:
        return sum(self.group(g) for g in groups)

    def update(self, other: "Projection") -> None:
        self.runs.update(other.runs)
        self.own.update(other.own)
        self.stage1.update(other.stage1)

    def take_shared(self, out: str) -> tuple[float, float]:
        """Run ``out`` failed before its group's shared work was done: take that part of its share back (all but
        its own evaluation); returns (that part, the stage-1 seconds in it), for :meth:`give` or to drop."""
        own = self.own.get(out, 0.0)
        shared, self.runs[out] = self.runs.get(out, 0.0) - own, own
        return shared, self.stage1.pop(out, 0.0)

    def give(self, to: str, shared: float, stage1: float) -> None:
        """Run ``to`` will do the shared work another run of its group did not: it carries that share from now on."""
        self.runs[to] = self.runs.get(to, 0.0) + shared
        if stage1:
            self.stage1[to] = self.stage1.get(to, 0.0) + stage1


def project_parts(group: Group, n_train: int, n_test: int, tp: Throughput) -> Projection:
    """Projected seconds of each pending run of ``group`` at throughput ``tp``, keyed by its run folder, with the
    parts the grid's ETA needs (see :class:`Projection`).

    The runs of a group go one after the other, and each shared piece of work falls to the run that does it
    first: the first pending run trains stage 1 (the epochs a killed run has not checkpointed, at the training
    rate; skipped when its artifact is cached, plus a BN recompute of the SWA average) and extracts the frozen
    base features (one train + test pass); the first SWAG-based run builds the SWAG pool (per member, one BN pass
    plus train + test features); every run evaluates once on the test set. Head training on cached features is
    negligible next to these. Shares, not one total per group, so that a grid's ETA after a group's first run
    counts the heads left, not stage 1 again for each of them.
    """
    pending = group.pending
    if not pending:
        return Projection()
    cfg = pending[0].cfg
    own = {str(r.out): n_test / tp.eval_img_s for r in pending}  # evaluation of each run (un-cached predictors)
    shares = dict(own)
    first, stage1 = str(pending[0].out), 0.0
    if not group.stage1_cached:
        stage1 = max(0, cfg.stage1.epochs - group.stage1_epochs_done()) * n_train / tp.train_img_s
        if cfg.stage1_mode == "swa":
            stage1 += n_train / tp.eval_img_s  # BN recompute of the SWA average
    shares[first] += stage1 + (n_train + n_test) / tp.eval_img_s  # stage 1 and the base features
    swag = [r for r in pending if get_method(r.cfg.method).requires_swag]
    if swag:
        pool = max(int({**get_method(r.cfg.method).defaults, **r.cfg.method_options}.get("pool_size", 8))
                   for r in swag)
        shares[str(swag[0].out)] += pool * (n_train + n_train + n_test) / tp.eval_img_s
    return Projection(shares, True, own, {first: stage1} if stage1 else {})


# Without a calibration the ETA still needs to know that stage 1 outweighs a head: weights in training-image units,
# an evaluation (forward-only) image counted as a third of a training image (forward + backward ~ 3 forwards).
NOMINAL_THROUGHPUT = Throughput(train_img_s=1.0, eval_img_s=3.0, device="-",
                                how="uncalibrated weights: an evaluation image costs a third of a training image")


def fit_time_budget(units: list[list[Group]], projected: Projection, budget_s: float
                    ) -> tuple[list[Group], list[Group]]:
    """The pending groups to run now and those left for later: in plan order, each unit of work (one group, or
    under ``--batched`` one stack of stage-1 networks, which is chosen or left whole: a part of a stack would train
    at another rate than projected) whose projected time fits in what the budget still has; a unit that does not
    fit waits, and a smaller one after it may still go. Why: a stage 1 cut off by the end of a session or a device
    lease leaves its only progress in a cache that may be lost, so work is started only where it is projected to
    finish. With ``--jobs`` the sum counts as one process's (the projection does not know how the device scales),
    which errs towards starting less."""
    chosen, left, used = [], [], 0.0
    for unit in units:
        pend = [g for g in unit if g.pending]
        cost = projected.total(pend)
        if used + cost <= budget_s:
            chosen += pend
            used += cost
        else:
            left += pend
    return chosen, left


def parse_duration(text: str) -> float:
    """Seconds in '2h30m', '90m', '45s', '1h5m10s' or a plain number of seconds ('5400')."""
    t = str(text).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", t):
        return float(t)
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", t)
    if m is None or not any(m.groups()):
        raise LtbenchError(f"--time-budget {text!r}: give a duration such as 2h30m, 90m, 45s or 5400 (seconds)")
    h, mi, sec = (float(x) if x else 0.0 for x in m.groups())
    return h * 3600 + mi * 60 + sec


def parse_time_budget(text: str) -> float:
    sec = parse_duration(text)
    if sec <= 0:
        raise LtbenchError(f"--time-budget {text!r}: the budget must be more than zero")
    return sec


def group_label(g: Group) -> str:
    return f"{g.runs[0].cfg.dataset_tag} seed{g.key[2]} {g.key[3]}"


def fmt_s(sec: float) -> str:
    sec = max(0.0, sec)
    h, rem = divmod(int(round(sec)), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def project_grid(groups: list[Group], dev: torch.device, steps: int, batched: bool, stack_max: int,
                 echo: Echo, weights: bool = True) -> Projection:
    """Projected seconds of each pending run, from a short timed calibration on ``dev``. Throughput depends on
    the network and batch, not on the imbalance factor: each (architecture, batch, classes) is calibrated once;
    with ``batched``, each stack size too. With ``steps`` 0 nothing is timed: the shares are relative weights at
    :data:`NOMINAL_THROUGHPUT` (``calibrated`` False), for the ETA's proportions; with ``weights`` False as well
    (a dry run) nothing is loaded and the projection is empty."""
    todo = [g for g in groups if g.pending]
    if not todo or (steps <= 0 and not weights):
        return Projection({}, calibrated=steps > 0)
    rates: dict[tuple, Throughput] = {}
    sizes: dict[tuple, tuple[int, int]] = {}
    proj = Projection(calibrated=steps > 0)
    for g in todo:
        cfg = g.runs[0].cfg
        spec = get_dataset(cfg.dataset)
        rk = (cfg.stage1.arch, cfg.stage1.batch_size, spec.num_classes)
        sk = (cfg.dataset, cfg.imbalance, cfg.subset_seed)
        if sk not in sizes or (steps > 0 and rk not in rates):
            data = load_run_data(cfg)
            sizes[sk] = (len(data.train_labels), len(data.test_labels))
            if steps > 0 and rk not in rates:
                tp = rates[rk] = calibrate(cfg, data, dev, steps=steps)
                echo(f"calibration {cfg.stage1.arch} {spec.num_classes} classes on {tp.device}: "
                     f"{tp.train_img_s:,.0f} train img/s, {tp.eval_img_s:,.0f} eval img/s ({tp.how})")
        proj.update(project_parts(g, *sizes[sk], rates[rk] if steps > 0 else NOMINAL_THROUGHPUT))
    if batched and steps > 0:  # stage 1 of a stack: each network at the stack's aggregate rate
        stacked: dict[tuple, float] = {}
        for unit in stage1_stacks(todo, stack_max):
            pend = [g for g in unit if not g.stage1_cached]
            if len(pend) < 2:
                continue
            cfg = pend[0].runs[0].cfg
            spec = get_dataset(cfg.dataset)
            rk = (cfg.stage1.arch, cfg.stage1.batch_size, spec.num_classes)
            sk = (cfg.dataset, cfg.imbalance, cfg.subset_seed)
            if rk + (len(pend),) not in stacked:
                agg = calibrate_stacked(cfg, load_run_data(cfg), dev, len(pend), steps)
                stacked[rk + (len(pend),)] = agg
                echo(f"calibration: {len(pend)} stacked {cfg.stage1.arch} on {dev}: {agg:,.0f} train img/s "
                     f"together ({agg / rates[rk].train_img_s:.2f}x one network's)")
            for g in pend:
                proj.update(project_parts(
                    g, *sizes[sk], dataclasses.replace(rates[rk], train_img_s=stacked[rk + (len(pend),)])))
    return proj


# ----------------------------------------------------------------------------------------------- execution


def _silent(s: str) -> None:
    """A run's own progress inside a grid without --verbose: no lines, and no live bars (``quiet``)."""


_silent.quiet = True  # type: ignore[attr-defined]


class GridProgress(Progress):
    """Progress across the grid's runs: runs done / total, elapsed and ETA.

    On a terminal, a tqdm bar (``Progress``) with one line per finished run printed above it; otherwise one plain
    line per finished run and, while a long run goes on, a ``grid: i/N runs done`` line every ``every_s`` seconds
    (``heartbeat`` is called from a timer, see :func:`ticking`); nothing under ``quiet``. The ETA counts projected
    work, not runs, once a projection exists: a run that trains stage 1 costs hundreds of head-only runs (each
    run is credited its own share, :func:`project_parts`; uncalibrated shares are weights, which is all a
    ratio needs).
    """

    def __init__(self, total: int, projected_total: float = 0.0, **kw) -> None:
        kw.setdefault("every_s", EVERY_S)
        # plain lines come from finished runs and the heartbeat, not from fractions of the total
        super().__init__(total, desc="grid", unit="run", closing_line=False, every_frac=2.0, **kw)
        self.projected_total, self.projected_done = projected_total, 0.0
        self.lock = threading.Lock()
        if self.bar is not None:  # whole runs: "3/12", not Progress's scaled image counts ("3.00/12.0")
            self.bar.unit_scale = False
            self.bar.refresh()

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left: remaining projected work at the pace measured so far (by run counts without a
        projection); None before anything finished."""
        dt = (self.clock() if now is None else now) - self.start
        if self.projected_total > 0 and self.projected_done > 0:
            return max(self.projected_total - self.projected_done, 0.0) * dt / self.projected_done
        if self.n > 0 and self.total:
            return (self.total - self.n) * dt / self.n
        return None

    def _eta_text(self, now: float) -> str:
        eta = self.eta(now)
        return "?" if eta is None else fmt_s(eta)

    def _line(self, now: float) -> str:
        now_doing = ACTIVITY.text(fmt_s)  # a silenced run's stage 1 would otherwise leave hours of "0/6 runs done"
        return (f"grid: {self.n}/{self.total} runs done, elapsed {fmt_s(now - self.start)}, "
                f"ETA {self._eta_text(now)}" + (f"; now {now_doing}" if now_doing else ""))

    def write(self, text: str) -> None:
        """A line above the bar (terminal) or a plain line; nothing under ``quiet``."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self._print(text)

    def forgo(self, projected_s: float) -> None:
        """Projected work that will not be done (a group's last run failed before its stage 1 existed)."""
        with self.lock:
            self.projected_total -= projected_s

    def credit(self, projected_s: float) -> None:
        """Projected work done outside any run (a batched stack's stage 1): it counts in the pace, not as a run."""
        with self.lock:
            self.projected_done += projected_s

    def finished(self, what: str, seconds: float, err: str | None, projected_s: float = 0.0) -> None:
        """One run is over (done or failed): count it and print ``[i/N] what  status  elapsed  ETA``."""
        with self.lock:
            self.projected_done += projected_s
            now = self.clock()
            n = self.n + 1
            status = "FAILED: " + err if err else f"{seconds:.1f}s"
            if self.bar is not None and not self.quiet:
                self.bar.write(f"[{n}/{self.total}] {what}  {status}", file=self.stream)
                self.update(1)
                return
            self.n = n
            if not self.quiet:
                self._print(f"[{n}/{self.total}] {what}  {status}  elapsed {fmt_s(now - self.start)}  "
                            f"ETA {self._eta_text(now)}")
                self.last_line = now

    def heartbeat(self) -> None:
        """Called periodically while runs go on: refresh the bar's clock, or print a plain line when one is due."""
        with self.lock:
            if self.quiet or self.closed:
                return
            if self.bar is not None:
                self.bar.refresh()
            else:
                self.update(0)


class ticking:
    """Context manager: call ``fn`` every ``every_s`` seconds from a daemon thread until the block ends."""

    def __init__(self, fn: Callable[[], None], every_s: float = 1.0) -> None:
        self.fn, self.every_s = fn, every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(self.every_s):
            self.fn()

    def __enter__(self) -> "ticking":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def _run_one(r: PlannedRun, echo: Echo) -> tuple[float, str | None]:
    """Run one planned run; (seconds, error or None). A user-facing error fails the run, not the grid."""
    from .runner import execute

    t0 = time.perf_counter()
    try:
        execute(r.cfg, echo=echo, force=r.conflict is not None)
        err = None
    except LtbenchError as e:
        err = str(e)
    return time.perf_counter() - t0, err


def _worker(units: list[list[Group]], threads: int, q, verbose: bool, batched: bool = False,
            quiet: bool = False) -> None:
    """Worker process for ``--jobs``: run its units of groups (training a unit's stage 1 together when
    ``batched``) and report each finished run on ``q``."""
    if threads > 0:
        torch.set_num_threads(threads)
    from .runner import execute

    pid = os.getpid()

    def say(s: str) -> None:
        if not quiet:
            print(f"  [pid {pid}] {s}", file=sys.stderr, flush=True)

    echo = say if verbose else _silent
    for unit in units:
        if batched:
            trained = train_stack(unit, say)
            if trained:
                q.put((STACKED, [str(g.pending[0].out) for g in trained]))
        for g in unit:
            for r in g.pending:
                t0 = time.perf_counter()
                try:
                    execute(r.cfg, echo=echo, force=r.conflict is not None)
                    err = None
                except Exception as e:  # noqa: BLE001 - report and go on with the next run
                    err = f"{type(e).__name__}: {e}"
                # whether the failed run's stage 1 exists is read here, before the next run may train it
                q.put((str(r.out), time.perf_counter() - t0, err, g.stage1_cached if err else True))
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


def train_stack(unit: list[Group], echo: Echo) -> list[Group]:
    """Train the stage 1 of every group in ``unit`` together (a no-op for a one-group unit whose stage 1 is
    cached); returns the groups whose stage 1 it trained. A failure is reported and left to the runs: each then
    trains its own stage 1 alone."""
    todo = [g for g in unit if not g.stage1_cached]
    if len(todo) < 2:
        return []
    from .runner import resolve_device, set_determinism
    from .train.batched import train_stage1_batched

    cfgs = [g.runs[0].cfg for g in todo]
    c = cfgs[0]
    t0 = time.perf_counter()
    try:
        data = load_run_data(c)
        set_determinism(c.seed, c.deterministic)
        train_stage1_batched(cfgs, data, resolve_device(c.device), echo)
    except (LtbenchError, RuntimeError) as e:  # RuntimeError: e.g. a stack too big for the GPU's memory
        echo(f"stage 1 batched: {len(cfgs)} networks of {c.dataset_tag} failed ({e}); their runs train them alone")
        return []
    echo(f"stage 1 batched: {len(cfgs)} networks of {c.dataset_tag} "
         f"({' '.join(f'{x.stage1_mode}/seed{x.seed}' for x in cfgs)}) in {fmt_s(time.perf_counter() - t0)}")
    return todo


STACKED = "(stage 1 stacked)"  # a worker's queue message: these groups' stage 1 was trained as one stack


def run_grid(groups: list[Group], jobs: int, projected: Projection, echo: Echo, verbose: bool = False,
             batched: bool = False, stack_max: int = 12, quiet: bool = False, threads: int | None = None,
             heartbeat_s: float = 1.0) -> dict:
    """Run every pending run under a :class:`GridProgress` (``[i/N] ... elapsed, ETA`` per run, a live bar or
    periodic lines in between). ``threads``: torch threads of this process, or of each ``--jobs`` worker (default:
    the cores split between the workers). Returns counts and wall time."""
    todo = [g for g in groups if g.pending]
    total = sum(len(g.pending) for g in todo)
    by_out = {str(r.out): (g, r) for g in todo for r in g.pending}
    failed: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    progress = GridProgress(total, projected.total(todo), quiet=quiet)
    say = progress.write  # lines above the bar; silent under quiet

    credited: set[str] = set()  # first runs whose stage-1 part a stack's training already counted

    def report(out: str, secs: float, err: str | None, stage1_exists: bool | None = None) -> None:
        g, r = by_out[out]
        share = projected.run(r) - (projected.stage1.get(out, 0.0) if out in credited else 0.0)
        if err:
            failed.append((out, err))
            exists = g.stage1_cached if stage1_exists is None else stage1_exists
            if out not in credited and not exists:  # its stage 1 was never trained
                shared, stage1 = projected.take_shared(out)
                later = g.pending[g.pending.index(r) + 1:]
                if later:  # the next run trains it after all
                    projected.give(str(later[0].out), shared, stage1)
                else:  # nobody will: that work leaves the projection instead of counting as done
                    progress.forgo(shared)
                share = projected.run(r)
        progress.finished(f"{r.cfg.dataset_tag} {r.cfg.run_name} seed{r.cfg.seed}", secs, err, share)

    def stacked(first_runs: list[str]) -> None:
        for out in first_runs:
            progress.credit(projected.stage1.get(out, 0.0))
            credited.add(out)

    units = stage1_stacks(todo, stack_max) if batched else [[g] for g in todo]
    with progress, ticking(progress.heartbeat, heartbeat_s):
        if jobs <= 1 or len(units) <= 1:
            if threads is not None:
                torch.set_num_threads(threads)
            inner: Echo = (lambda s: say(f"  {s}")) if verbose else _silent
            for unit in units:
                if batched:
                    stacked([str(g.pending[0].out) for g in train_stack(unit, say)])
                for g in unit:
                    for r in g.pending:
                        report(str(r.out), *_run_one(r, inner))
        else:
            import multiprocessing as mp
            ctx = mp.get_context("spawn")  # CUDA cannot be forked; spawn is safe on every platform
            q = ctx.Queue()
            cost = projected.total
            shards = split_groups(units, jobs, cost)  # whole units: a stack trains in one worker
            per = threads if threads is not None else max(1, (os.cpu_count() or 1) // len(shards))
            procs = [ctx.Process(target=_worker, args=(s, per, q, verbose, batched, quiet),
                                 daemon=False) for s in shards]
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
                elif msg[0] == STACKED:
                    stacked(msg[1])
                else:
                    report(*msg)
            for p in procs:
                p.join()
    done = progress.n
    if done < total and jobs > 1 and len(units) > 1:
        failed.append(("(worker)", f"{total - done} runs were not reported; a worker process died"))
    return {"runs": total, "done": done, "failed": failed, "seconds": time.perf_counter() - t0}


def print_plan(groups: list[Group], echo: Echo) -> None:
    n_runs = sum(len(g.runs) for g in groups)
    n_done = sum(len(g.runs) - len(g.pending) for g in groups)
    n_s1 = sum(1 for g in groups if g.pending and not g.stage1_cached)
    echo(f"grid: {plural(n_runs, 'run')} in {plural(len(groups), 'stage-1 group')}; {n_done} already complete "
         f"(skipped), {n_runs - n_done} to run; {plural(n_s1, 'stage-1 training')} needed")
    for g in groups:
        ds, imb, seed, mode, _ = g.key
        tag = g.runs[0].cfg.dataset_tag
        state = "done" if not g.pending else ("stage 1 cached" if g.stage1_cached else "stage 1 to train")
        echo(f"  {tag:<18} seed{seed} {mode:<3}  {len(g.runs) - len(g.pending)}/{len(g.runs)} done  ({state})")
