"""Stage 1 of several networks of one shape trained as one stacked network (``stacked.StackedResNet32``).

Within one dataset and imbalance factor the grid's stage-1 networks (3 seeds x SGD/SWA) see the same number of
images per epoch and take the same number of steps; they differ in data order, augmentation, initialisation and
learning-rate schedule. This trainer gives each network exactly what ``stage1.train_stage1`` gives it alone:

* its own ``torch.Generator`` seeded with its seed, drawing its own permutation and crop/flip offsets through
  ``data.train_batches`` (the same calls in the same order as alone);
* its own initialisation (``stage1.build_network``: ``torch.manual_seed(seed)`` then the architecture);
* its own learning rate at every step (``stage1.lr_function``), applied by ``StackedSGD``;
* its own SWA average and SWAG moments (``Swag.collect_vector`` of its parameters after its ``swa_start``),
  and the BN recompute of the SWA average with its own generator afterwards.

Checkpoints stay per network: after every epoch each network's ``ckpt.pt`` is written under its stage-1 folder
(``ltbench.paths.stage1_dir``) in ``train_stage1``'s format (state dict, ``torch.optim.SGD`` state, generator,
log, ...), and at the end its ``final.pt``. So ``get_stage1`` finds them, stage 2 and the cache work as today,
and a killed batched group resumes (batched, or network by network through ``train_stage1``) from its last epoch.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..checkpoint import atomic_torch_save, file_lock, load_checkpoint
from ..config import RunConfig
from ..errors import DivergedError, LtbenchError
from .accel import accelerate
from .loop import autocast_for
from .stacked import StackedResNet32, stackable
from .stacked_sgd import StackedSGD
from ..paths import stage1_dir
from ..progress import ACTIVITY, plural, track
from .stage1 import build_network, invalidate_derived, lr_function, remove_stale_partials
from .swag import Swag, network_with_weights

Echo = Callable[[str], None]

# Stage-1 fields that may differ between networks trained together (the rest must be equal: shapes, steps,
# optimiser constants, precision). The learning-rate schedule and the SWAG rank are per network.
PER_NETWORK_FIELDS = ("lr", "warmup_epochs", "swa_start", "swa_lr", "swag_rank", "lr_schedule", "lr_milestones",
                      "lr_gamma")


def batch_key(cfg: RunConfig) -> tuple:
    """Networks with equal keys can be trained as one stacked network (same data, shape, steps, optimiser)."""
    s = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(cfg.stage1).items() if k not in PER_NETWORK_FIELDS}
    data = tuple(sorted((k, str(v)) for k, v in cfg.data.items()))
    return (cfg.dataset, cfg.imbalance, str(cfg.data_root), data, tuple(sorted(s.items())),
            cfg.stage1_precision(), cfg.deterministic)


def can_batch(cfg: RunConfig) -> bool:
    return stackable(cfg.stage1.arch)


def train_stage1_batched(cfgs: list[RunConfig], data, device: torch.device, echo: Echo = print) -> list[Path]:
    """Make sure each config's stage-1 ``final.pt`` exists, training the missing ones together; their folders.

    Takes every folder's lock (in sorted order, so two processes cannot deadlock), skips networks whose
    ``final.pt`` exists, and resumes networks from their ``ckpt.pt``. Networks left at different epochs (a kill
    between two networks' checkpoint writes) are trained as separate stacks, one per epoch reached.
    """
    if not cfgs:
        return []
    keys = {batch_key(c) for c in cfgs}
    if len(keys) != 1:
        raise LtbenchError("internal: networks trained together must share dataset, shape, steps and optimiser")
    if not can_batch(cfgs[0]):
        raise LtbenchError(f"batched stage 1 supports resnet32 only, not {cfgs[0].stage1.arch!r}")
    dirs = [stage1_dir(c, data.fingerprint()) for c in cfgs]  # the same folders get_stage1 reads
    if len(set(dirs)) != len(dirs):
        raise LtbenchError("internal: the same stage-1 network was listed twice in one batched group")
    with contextlib.ExitStack() as locks:
        for d in sorted(dirs):
            locks.enter_context(file_lock(d / ".lock"))
        todo = []
        for c, d in zip(cfgs, dirs):
            remove_stale_partials(d)
            if (d / "final.pt").is_file():
                echo(f"stage 1: reusing {d}")
            else:
                todo.append((c, d, load_checkpoint(d / "ckpt.pt")))
        by_epoch: dict[int, list] = {}
        for t in todo:
            by_epoch.setdefault(t[2]["epoch"] if t[2] is not None else 0, []).append(t)
        for _, part in sorted(by_epoch.items()):
            _train(*zip(*part), data=data, device=device, echo=echo)
    return dirs


def _train(cfgs: tuple, dirs: tuple, cks: tuple, data, device: torch.device, echo: Echo) -> None:
    m, s = len(cfgs), cfgs[0].stage1
    k = data.num_classes
    nets = [build_network(c, k, device) for c in cfgs]
    gens = [torch.Generator().manual_seed(c.seed) for c in cfgs]
    swags = [Swag.for_network(n, c.stage1.swag_rank) if c.stage1_mode == "swa" else None for n, c in zip(nets, cfgs)]
    logs: list[list[dict]] = [[] for _ in cfgs]
    seconds = [0.0] * m
    start = 0
    if cks[0] is not None:
        for i, ck in enumerate(cks):
            nets[i].load_state_dict(ck["network"])
            gens[i].set_state(ck["generator"])
            if swags[i] is not None:
                swags[i] = Swag.from_state_dict(ck["swag"], device)
            logs[i], seconds[i] = ck["log"], ck["seconds"]
        torch.set_rng_state(cks[0]["torch_rng"])
        start = cks[0]["epoch"]
        echo(f"stage 1 batched: resuming {m} networks from epoch {start}/{s.epochs} "
             f"({', '.join(str(d / 'ckpt.pt') for d in dirs)})")
    wide = StackedResNet32.from_networks(nets)
    opt = StackedSGD(list(wide.parameters()), s.momentum, s.nesterov, s.weight_decay)
    if cks[0] is not None:
        opt.load_network_state_dicts([ck["optimizer"] for ck in cks], nets, [c.stage1 for c in cfgs])
    lr_at = [lr_function(c) for c in cfgs]
    swa_start = [c.stage1_schedule()["swa_start"] for c in cfgs]
    n = len(data.train_labels)
    steps = (n + s.batch_size - 1) // s.batch_size
    model = accelerate(wide, device, s.compile, s.cuda_graphs, echo)
    precision = cfgs[0].stage1_precision(device)
    names = " ".join(f"{c.stage1_mode}/seed{c.seed}" for c in cfgs)
    if start < s.epochs:
        echo(f"stage 1 batched: {m} networks ({names}) as one stacked {s.arch}, precision {precision}")
    quiet = bool(getattr(echo, "quiet", False))
    with ACTIVITY.running(f"stage 1 batched [{m}]", s.epochs, start):  # the grid's heartbeat reads it
        for epoch in range(start, s.epochs):
            wide.train()
            rows = _epoch(model, opt, data, gens, lr_at, epoch, steps, s, device, precision, cfgs,
                          progress=None if quiet else f"stage 1 batched [{m}] {epoch + 1}/{s.epochs}")
            flat = None
            for i, row in enumerate(rows):
                if swags[i] is not None and epoch + 1 > swa_start[i]:
                    flat = wide.flat_params() if flat is None else flat
                    swags[i].collect_vector(flat[i])
                    row["swa_n"] = swags[i].n
                seconds[i] += row["seconds"]
                logs[i].append(row)
            # saved before the epoch line, so a printed epoch is always one a rerun resumes after
            rng = torch.get_rng_state()
            for i, (c, d) in enumerate(zip(cfgs, dirs)):
                nets[i].load_state_dict(wide.network_state(i))
                atomic_torch_save(d / "ckpt.pt", {
                    "network": nets[i].state_dict(), "optimizer": opt.network_state_dict(i, nets[i], c.stage1,
                                                                                          rows[i]["lr"]),
                    "generator": gens[i].get_state(), "torch_rng": rng,
                    "swag": swags[i].state_dict() if swags[i] is not None else None, "log": logs[i], "epoch": epoch + 1,
                    "seconds": seconds[i], "config": c.to_dict(), "world_size": 1})
            ACTIVITY.update(epoch + 1)
            r0 = rows[0]
            echo(f"stage 1 batched [{m}] epoch {epoch + 1}/{s.epochs}  loss "
                 + " ".join(f"{r['loss']:.4f}" for r in rows) + "  train acc "
                 + " ".join(f"{r['train_acc']:.1f}%" for r in rows) + f"  {r0['group_images_per_s']:.0f} img/s "
                 f"({m} x {r0['images_per_s']:.0f})")
    for i, (c, d) in enumerate(zip(cfgs, dirs)):
        net = nets[i]
        net.load_state_dict(wide.network_state(i))
        if swags[i] is not None:
            t0 = time.perf_counter()
            echo(f"stage 1 [{c.stage1_mode}/seed{c.seed}]: SWA average of {plural(swags[i].n, 'snapshot')}; "
                 "recomputing BN statistics")
            bn_batches = track(data.train_batches(s.batch_size, gens[i], device), total=n, unit="img",
                               desc=f"stage 1 [{c.stage1_mode}/seed{c.seed}]: SWA BN pass", quiet=quiet,
                               weight=lambda b: len(b[-1]))
            net = network_with_weights(net, swags[i].mean, bn_batches)
            seconds[i] += time.perf_counter() - t0
        invalidate_derived(d)
        atomic_torch_save(d / "final.pt", {
            "network": {kk: v.contiguous() for kk, v in net.state_dict().items()},
            "swag": swags[i].state_dict() if swags[i] is not None else None, "log": logs[i],
            "seconds": seconds[i], "config": c.to_dict(), "world_size": 1})
        (d / "ckpt.pt").unlink(missing_ok=True)


def _epoch(model, opt: StackedSGD, data, gens: list[torch.Generator], lr_at: list, epoch: int, steps: int, s,
           device: torch.device, precision: str, cfgs, progress: str | None = None) -> list[dict]:
    """One epoch of all M networks; one log row per network (as ``train_one_epoch`` writes, plus group fields).

    ``progress``: a description to show live progress under (images of all M networks, as stage 1 alone does:
    a bar on a terminal, a plain line every 30 s otherwise, none at the end: the caller prints the epoch line)."""
    m = len(gens)
    t0 = time.perf_counter()
    # every step's lr of every network, computed as alone (lr_at(epoch + i / steps)), moved once per epoch
    lrs = torch.tensor([[f(epoch + i / steps) for f in lr_at] for i in range(steps)], dtype=opt.params[0].dtype)
    lrs_dev = lrs.to(device)
    total = torch.zeros(m, dtype=torch.float64, device=device)
    correct = torch.zeros(m, dtype=torch.float64, device=device)
    seen = 0
    its = [data.train_batches(s.batch_size, g, device) for g in gens]
    steps_iter = zip(*its)
    if progress is not None:
        steps_iter = track(steps_iter, total=m * len(data.train_labels), desc=progress, unit="img",
                           weight=lambda bs: sum(len(b[-1]) for b in bs), every_frac=1.0, closing_line=False)
    for i, batches in enumerate(steps_iter):
        x = torch.cat([b[0] for b in batches], 1)
        y = torch.stack([b[1] for b in batches])
        if s.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, precision):
            logits = model(x)
        b = y.shape[1]
        losses = F.cross_entropy(logits.float().reshape(m * b, -1), y.reshape(-1), reduction="none").view(m, b).mean(1)
        opt.zero_grad()
        losses.sum().backward()  # networks share no parameter: each gets the gradient of its own mean loss
        opt.step(lrs_dev[i])
        total += losses.detach().double() * b
        correct += (logits.detach().argmax(2) == y).sum(1)
        seen += b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    total_c, correct_c = total.cpu(), correct.cpu()
    bad = [f"{c.stage1_mode}/seed{c.seed}" for j, c in enumerate(cfgs) if not math.isfinite(float(total_c[j]))]
    if bad:
        raise DivergedError(f"stage 1 diverged in epoch {epoch + 1} for {', '.join(bad)} (batched group): the loss "
                            "is not finite. Nothing was recorded as a result; lower the learning rate or check "
                            "the data.")
    last = [f(epoch + (steps - 1) / steps) for f in lr_at]  # the last step's lr, as train_one_epoch logs it
    return [{"epoch": epoch + 1, "loss": float(total_c[j]) / max(seen, 1),
             "train_acc": 100.0 * float(correct_c[j]) / max(seen, 1), "lr": last[j],
             "images_per_s": seen / max(seconds, 1e-9), "seconds": seconds, "world_size": 1, "stage": 1,
             "batched": m, "group_images_per_s": m * seen / max(seconds, 1e-9)} for j in range(m)]


def stacked_steps(data, device: torch.device, m: int, batch_size: int = 128, channels_last: bool = True,
                  precision: str = "fp32", compile: bool = False, cuda_graphs: bool = False,
                  echo: Echo = lambda s: None) -> Callable[[int], int]:
    """A function ``run(k)`` doing ``k`` stacked training steps of ``m`` ResNet-32s (seeds 0..m-1, one generator
    each, lr 0.05), returning the images trained (``k * m * batch_size``, a partial last batch counted as
    itself). For timing: ``bench.py grid``'s calibration and the batched benchmark use it."""
    nets = [build_network(resolve_for_timing(i), data.num_classes, device) for i in range(m)]
    wide = StackedResNet32.from_networks(nets).train()
    opt = StackedSGD(list(wide.parameters()), 0.9, True, 5e-4)
    model = accelerate(wide, device, compile, cuda_graphs, echo)
    gens = [torch.Generator().manual_seed(i) for i in range(m)]
    lr = torch.full((m,), 0.05, device=device)

    def forever(g):
        while True:
            yield from data.train_batches(batch_size, g, device)
    its = [forever(g) for g in gens]

    def run(k: int) -> int:
        seen = 0
        for _ in range(k):
            batches = [next(it) for it in its]
            x = torch.cat([b[0] for b in batches], 1)
            y = torch.stack([b[1] for b in batches])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_for(device, precision):
                logits = model(x)
            b = y.shape[1]
            loss = F.cross_entropy(logits.float().reshape(m * b, -1), y.reshape(-1), reduction="none")
            opt.zero_grad()
            loss.view(m, b).mean(1).sum().backward()
            opt.step(lr)
            seen += m * b
        return seen
    return run


def resolve_for_timing(seed: int):
    """A minimal config carrying what ``build_network`` reads (seed, arch, channels_last) for timing runs."""
    from types import SimpleNamespace
    return SimpleNamespace(seed=seed, stage1=SimpleNamespace(arch="resnet32", channels_last=False))
