"""Stage 1: train the feature extractor (plain SGD, or SWA collecting SWAG moments in the same pass).

The result is cached under ``$LTBENCH_CACHE/stage1/<dataset>-<mode>-seed<S>-<config hash>-d<data hash>/``
(``ltbench.paths``) so every stage-2 method with the same stage-1 config and data reuses it. A checkpoint is
written after every epoch; running the same command again resumes from it.
"""
from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import atomic_torch_save, file_lock, load_checkpoint
from ..config import RunConfig
from ..distributed import average_bn_stats, barrier, broadcast_object, is_main, rank_world, wrap_ddp
from ..models import Network, create_network
from .. import paths
from ..progress import ACTIVITY, plural
from .accel import accelerate
from .loop import cross_entropy_step, sgd, train_one_epoch
from .schedules import swa_schedule, warmup_cosine, warmup_step
from .swag import Swag, network_with_weights

Echo = Callable[[str], None]


@dataclass
class Stage1Artifact:
    network: Network          # SGD: the last iterate; SWA: the averaged weights with recomputed BN statistics
    swag: Swag | None         # SWA mode only: moments over all parameters
    log: list[dict]
    dir: Path
    seconds: float


def stage1_dir(cfg: RunConfig, data=None) -> Path:
    """The cache folder of ``cfg``'s stage 1; with ``data``, keyed also by the fingerprint of the data loaded, so a
    network trained on other data under the same config (a wrong data root, since fixed) is never reused.
    (``ltbench.paths.stage1_dir`` with the data's fingerprint.)"""
    return paths.stage1_dir(cfg, data.fingerprint() if data is not None else None)


def lr_function(cfg: RunConfig) -> Callable[[float], float]:
    """Stage-1 learning rate as a function of the fractional epoch (preset's schedule scaled to the run)."""
    s, sched = cfg.stage1, cfg.stage1_schedule()
    step = None
    if s.lr_schedule == "step":
        step = lambda t: warmup_step(t, s.lr, sched["warmup_epochs"], sched["lr_milestones"], s.lr_gamma)  # noqa: E731
    if cfg.stage1_mode == "swa":
        return lambda t: swa_schedule(t, s.lr, s.epochs, sched["warmup_epochs"], sched["swa_start"], s.swa_lr, step)
    return step or (lambda t: warmup_cosine(t, s.lr, s.epochs, sched["warmup_epochs"], 0.0))


def build_network(cfg: RunConfig, num_classes: int, device: torch.device) -> Network:
    torch.manual_seed(cfg.seed)  # initialise on CPU: the same weights on every device
    net = create_network(cfg.stage1.arch, num_classes).to(device)
    if cfg.stage1.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def get_stage1(cfg: RunConfig, data, device: torch.device, echo: Echo = print) -> Stage1Artifact:
    """Load the cached stage-1 artifact for ``cfg``, training (or resuming) it first when needed."""
    d = stage1_dir(cfg, data)
    # DDP: rank 0 holds the lock and reads the cache; the others get its answer (no shared filesystem needed)
    with file_lock(d / ".lock") if is_main() else contextlib.nullcontext():
        if is_main():
            remove_stale_partials(d)
        final = broadcast_object(load_checkpoint(d / "final.pt") if is_main() else None)
        if final is None:
            train_stage1(cfg, data, device, d, echo)
            final = broadcast_object(load_checkpoint(d / "final.pt") if is_main() else None)
        else:
            echo(f"stage 1: reusing {d}")
    late = cfg.lr_milestones_after_swa_start()  # every run on this extractor says so, trained or reused
    if late:
        echo(f"stage 1: note: lr milestones {', '.join(f'{m:g}' for m in late)} fall at or after the SWA start "
             f"(epoch {cfg.stage1_schedule()['swa_start']:g}); the constant swa_lr {cfg.stage1.swa_lr:g} holds "
             "from there, so they never applied")
    net = create_network(cfg.stage1.arch, data.num_classes)
    net.load_state_dict(final["network"])
    net = net.to(device).eval()
    if cfg.stage1.channels_last:
        net = net.to(memory_format=torch.channels_last)
    swag = Swag.from_state_dict(final["swag"], device) if final.get("swag") is not None else None
    return Stage1Artifact(net, swag, final["log"], d, final["seconds"])


def remove_stale_partials(d: Path) -> None:
    """Tidy ``d`` under its lock: half-written ``.*.tmp`` files of a killed writer, and a ``ckpt.pt`` that a kill
    between writing ``final.pt`` and deleting it left behind (``final.pt`` wins)."""
    if not d.is_dir():
        return
    for f in d.glob(".*.tmp"):
        f.unlink(missing_ok=True)
    if (d / "final.pt").is_file():
        (d / "ckpt.pt").unlink(missing_ok=True)


def invalidate_derived(d: Path) -> None:
    """Drop caches computed from an earlier ``final.pt`` of ``d`` (features, stage-2 checkpoints).

    Called when stage 1 is (re)trained: after a user deleted a corrupt ``final.pt``, or retrained without
    ``--deterministic``, stale features or a finished stage-2 checkpoint would otherwise be reused silently.
    """
    shutil.rmtree(paths.features_dir(d), ignore_errors=True)
    for w in paths.stage2_dirs_of(d):
        shutil.rmtree(w, ignore_errors=True)


def train_stage1(cfg: RunConfig, data, device: torch.device, d: Path, echo: Echo = print) -> None:
    s = cfg.stage1
    quiet = getattr(echo, "quiet", False) or not is_main()  # live progress unless the caller is silent
    net = build_network(cfg, data.num_classes, device)
    opt = sgd(net.parameters(), s)
    gen = torch.Generator().manual_seed(cfg.seed)
    swag = Swag.for_network(net, s.swag_rank) if cfg.stage1_mode == "swa" else None
    log: list[dict] = []
    start, seconds = 0, 0.0
    ck = broadcast_object(load_checkpoint(d / "ckpt.pt") if is_main() else None)
    if ck is not None:
        net.load_state_dict(ck["network"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        if swag is not None:
            swag = Swag.from_state_dict(ck["swag"], device)
        log, start, seconds = ck["log"], ck["epoch"], ck["seconds"]
        echo(f"stage 1: resuming {cfg.stage1_mode} from epoch {start}/{s.epochs} ({d / 'ckpt.pt'}, "
             f"saved by {ck.get('world_size', 1)} process(es), now {rank_world()[1]})")
    lr_at = lr_function(cfg)
    swa_start = cfg.stage1_schedule()["swa_start"]
    n = len(data.train_labels)
    steps = (n + s.batch_size - 1) // s.batch_size
    world = rank_world()[1]
    model = wrap_ddp(net, device)  # DDP keeps ``net`` itself: state dicts have no ``module.`` prefix
    model = accelerate(model, device, s.compile, s.cuda_graphs, echo)
    loss_fn = cross_entropy_step(model, device, s.channels_last)
    precision = cfg.stage1_precision(device)
    if start < s.epochs:
        echo(f"stage 1: precision {precision}" + (f" (auto on {device.type})" if s.precision == "auto" else ""))
    with ACTIVITY.running(f"stage 1 [{cfg.stage1_mode}]", s.epochs, start):  # the grid's heartbeat reads it
        for epoch in range(start, s.epochs):
            net.train()
            row = train_one_epoch(opt, data.train_batches(s.batch_size, gen, device), loss_fn, lr_at, epoch, steps,
                                  device, precision, what="stage 1",
                                  progress=None if quiet else f"stage 1 [{cfg.stage1_mode}] {epoch + 1}/{s.epochs}",
                                  progress_total=n)
            average_bn_stats(net)  # DDP: ranks' BN running stats saw different images; make them one network
            row["images_per_s"] *= world
            row["world_size"] = world
            if swag is not None and epoch + 1 > swa_start:
                swag.collect(net)
                row["swa_n"] = swag.n
            row["stage"] = 1
            seconds += row["seconds"]
            log.append(row)
            if is_main():  # saved before the epoch line, so a printed epoch is always one a rerun resumes after
                atomic_torch_save(d / "ckpt.pt", {
                    "network": net.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(), "swag": swag.state_dict() if swag is not None else None,
                    "log": log, "epoch": epoch + 1, "seconds": seconds, "config": cfg.to_dict(), "world_size": world})
            ACTIVITY.update(epoch + 1)
            echo(f"stage 1 [{cfg.stage1_mode}] epoch {epoch + 1}/{s.epochs}  loss {row['loss']:.4f}  "
                 f"train acc {row['train_acc']:.1f}%  lr {row['lr']:.4f}  {row['images_per_s']:.0f} img/s")
    if swag is not None:
        t0 = time.perf_counter()
        echo(f"stage 1: SWA average of {plural(swag.n, 'snapshot')}; recomputing BN statistics")
        # DDP: whole global batches round-robin over ranks, so the averaged BN statistics equal one process's
        kw = {"shard": "batches"} if world > 1 and hasattr(data, "eval_indices") else {}
        from ..progress import track
        bn_batches = track(data.train_batches(s.batch_size, gen, device, **kw), total=n, desc="stage 1: SWA BN pass",
                           unit="img", weight=lambda b: len(b[-1]), quiet=quiet)
        net = network_with_weights(net, swag.mean, bn_batches)
        seconds += time.perf_counter() - t0
    if is_main():
        invalidate_derived(d)
        atomic_torch_save(d / "final.pt", {
            "network": {k: v.contiguous() for k, v in net.state_dict().items()},
            "swag": swag.state_dict() if swag is not None else None, "log": log, "seconds": seconds,
            "config": cfg.to_dict(), "world_size": world})
        (d / "ckpt.pt").unlink(missing_ok=True)
    barrier()
