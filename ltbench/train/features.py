"""Features of frozen extractors, computed once and cached beside the stage-1 artifact.

Stage-2 methods that keep the extractor frozen (cRT, LWS, tau-norm, SWAG, SRepr) train only a classifier, so the
extractor runs once per image (per pool member) instead of once per stage-2 epoch. The SWAG pool (P sampled
extractors, each with its own recomputed BN statistics) is shared by ``swag`` and ``srepr``.

Every pass over a split (features, BN recomputes) shows live progress as stage 1 does (``ltbench.progress``): a
bar on a terminal, plain lines with images/s and ETA otherwise, nothing when the run's echo is quiet.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torch.nn as nn

from ..checkpoint import atomic_torch_save, file_lock, load_checkpoint
from ..paths import base_features_file, swag_members_file, swag_pool_file
from ..progress import ACTIVITY
from .swag import network_with_weights, prefix_mask


@torch.no_grad()
def extract(extractor: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``extractor`` in eval mode over (x, y) batches: float32 features [N, D] and labels [N], on the device."""
    extractor.eval()
    feats, labels = [], []
    for x, y in batches:
        feats.append(extractor(x).float())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def cached(path: Path, compute: Callable[[], dict], device: torch.device) -> dict:
    """Load ``path`` if present, else compute, save atomically and return; tensors moved to ``device``."""
    with file_lock(path.with_suffix(".lock")):
        obj = load_checkpoint(path)
        if obj is None:
            obj = compute()
            atomic_torch_save(path, {k: v.cpu() if torch.is_tensor(v) else v for k, v in obj.items()})
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in obj.items()}


SPLITS = ("train", "test")


def _split_size(data, split: str) -> int | None:
    """Images in ``split`` (None when the view hides it: the progress then counts without a total)."""
    try:
        return len(data.train_labels if split == "train" else data.test_labels)
    except AttributeError:
        return None


def tracked(ctx, batches: Iterable, desc: str, split: str, activity: str | None = None) -> Iterator:
    """``batches`` (x, y) with live progress under ``desc``, counted in images of ``split``: a bar on a terminal;
    otherwise a plain line each tenth (or every 30 s) and a closing line; silent when ``ctx.echo`` is quiet (DDP
    ranks other than 0). With ``activity``, the pass is also the process's ACTIVITY (in images) while it runs:
    the grid's heartbeat line for a single long pass, which has no steps of its own to count (not when the split's
    size is unknown: there is no total to count towards). Use it under ``contextlib.closing`` so a pass that
    fails gives the line back at once, not when the generator is collected."""
    from ..progress import track
    total = _split_size(ctx.data, split)
    it = track(batches, total=total, desc=desc, unit="img", weight=lambda b: len(b[-1]),
               quiet=bool(getattr(ctx.echo, "quiet", False)))
    return it if activity is None or total is None else _as_activity(it, activity, total)


def _as_activity(batches: Iterator, label: str, total: int) -> Iterator:
    with ACTIVITY.running(label, total, unit="images") as act:
        seen = 0
        for b in batches:
            yield b
            seen += len(b[-1])
            act.update(seen)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def base_features(ctx, split: str = "train") -> dict:
    """Un-augmented features of the stage-1 extractor (SGD last iterate or SWA average) on one split:
    ``{split: [N, D], f"{split}_y": [N]}``. Methods ask for ``train``; only the evaluator asks for ``test``."""
    _check_split(split)
    data, dev, bs = ctx.data, ctx.device, ctx.cfg.eval_batch_size
    ext = ctx.stage1.network.extractor

    def compute() -> dict:
        ctx.echo(f"stage 2: extracting {split} features of the frozen stage-1 extractor")
        z, y = extract(ext, tracked(ctx, data.eval_batches(split, bs, dev), f"stage 2: {split} features", split))
        return {split: z, f"{split}_y": y}
    return cached(base_features_file(ctx.stage1.dir, split), compute, dev)


def pool_key(opts: dict) -> str:
    return hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:12]


def pool_options(ctx, pool_size: int, scale: float, diag_only: bool, bn: str, one_pass: bool = False,
                 lowrank_norm: str = "max_rank") -> dict:
    """Everything a SWAG pool depends on (its cache key)."""
    opts = {"pool_size": pool_size, "scale": scale, "diag_only": diag_only, "bn": bn, "seed": ctx.cfg.seed,
            "lowrank_norm": lowrank_norm}
    if one_pass:
        opts["one_pass"] = True  # only when set: the default cache key stays what it was
    return opts


def swag_pool_features(ctx, pool_size: int, scale: float, diag_only: bool, bn: str, one_pass: bool = False,
                       lowrank_norm: str = "max_rank", split: str = "train") -> dict:
    """Features of one split under ``pool_size`` SWAG-sampled extractors: ``{split: [P, N, D], "options": ...}``.

    Only the extractor is perturbed (the classifier is re-trained in stage 2). ``bn='recompute'`` re-estimates
    each sample's BN statistics on one augmented pass over the training set (as the SWAG paper does);
    ``bn='swa'`` reuses the SWA statistics (cheaper; a deviation). The pool members (weights with their BN
    statistics) are drawn once and cached, so the train split (for the method) and the test split (for the
    evaluator) are computed by the very same networks.

    ``one_pass=True`` feeds every batch, augmented once, to all members at once: one BN pass for the whole pool
    and one feature pass per split for all members and the base extractor. It is a separate cache entry: its BN
    statistics come from one shared augmentation draw.
    """
    _check_split(split)
    art, data, dev, bs = ctx.stage1, ctx.data, ctx.device, ctx.cfg.eval_batch_size
    opts = pool_options(ctx, pool_size, scale, diag_only, bn, one_pass, lowrank_norm)
    key = pool_key(opts)
    members = pool_members(ctx, opts, key)

    def compute() -> dict:
        nets = [_member_network(art.network, sd, dev) for sd in members]
        if one_pass:
            ctx.echo(f"stage 2: extracting {split} features of the base extractor and {pool_size} SWAG samples "
                     "in one pass")
            with contextlib.closing(tracked(ctx, data.eval_batches(split, bs, dev),
                                            f"stage 2: {split} features, base + {pool_size} SWAG samples", split,
                                            activity=f"SWAG pool: {split} features, {pool_size} samples in one pass"
                                            )) as batches:
                feats, y = extract_many([art.network.extractor] + [n.extractor for n in nets], batches)
            cached(base_features_file(art.dir, split), lambda: {split: feats[0], f"{split}_y": y}, dev)
            return {split: torch.stack(feats[1:]), "options": opts}
        out = []
        with ACTIVITY.running(f"SWAG pool: {split} features", pool_size, unit="samples"):  # the grid's heartbeat
            for p, net in enumerate(nets):
                ctx.echo(f"stage 2: SWAG sample {p + 1}/{pool_size}: extracting {split} features")
                out.append(extract(net.extractor, tracked(ctx, data.eval_batches(split, bs, dev),
                                                          f"stage 2: SWAG sample {p + 1}/{pool_size} {split} "
                                                          "features", split))[0])
                ACTIVITY.update(p + 1)
        return {split: torch.stack(out), "options": opts}
    return cached(swag_pool_file(art.dir, key, split), compute, dev)


def _member_network(template: nn.Module, state: dict, device) -> nn.Module:
    net = copy.deepcopy(template)
    net.load_state_dict({k: v.to(device) for k, v in state.items()})
    return net.eval()


def pool_members(ctx, opts: dict, key: str) -> list[dict]:
    """The pool's networks (state dicts: sampled weights + their BN statistics), drawn once and cached."""
    art, data, dev = ctx.stage1, ctx.data, ctx.device
    P, bn = opts["pool_size"], opts["bn"]

    def compute() -> dict:
        gen = torch.Generator().manual_seed(10_000 + ctx.cfg.seed)
        mask = prefix_mask(art.network, "extractor.")
        draw = lambda: art.swag.sample(opts["scale"], gen, diag_only=opts["diag_only"], mask=mask,  # noqa: E731
                                       lowrank_norm=opts["lowrank_norm"])
        if opts.get("one_pass"):
            nets = [network_with_weights(art.network, draw(), None) for _ in range(P)]
            if bn == "recompute":
                ctx.echo(f"stage 2: recomputing BN of {P} SWAG samples in one augmented pass")
                with contextlib.closing(tracked(ctx, data.train_batches(ctx.cfg.stage1.batch_size, gen, dev),
                                                f"stage 2: BN pass of {P} SWAG samples", "train",
                                                activity=f"SWAG pool: BN pass of {P} samples in one pass")) as b:
                    update_bn_many(nets, b)
        else:
            nets = []
            with ACTIVITY.running("SWAG pool: " + ("BN passes" if bn == "recompute" else "drawing"), P, unit="samples"):
                for p in range(P):
                    ctx.echo(f"stage 2: SWAG sample {p + 1}/{P}" + (": recomputing BN" if bn == "recompute" else ""))
                    vec = draw()
                    bn_batches = None
                    if bn == "recompute":
                        bn_batches = tracked(ctx, data.train_batches(ctx.cfg.stage1.batch_size, gen, dev),
                                             f"stage 2: SWAG sample {p + 1}/{P} BN pass", "train")
                    nets.append(network_with_weights(art.network, vec, bn_batches))
                    ACTIVITY.update(p + 1)
        return {"members": [{k: v.detach().cpu() for k, v in n.state_dict().items()} for n in nets],
                "options": opts}
    return cached(swag_members_file(art.dir, key), compute, torch.device("cpu"))["members"]


@torch.no_grad()
def update_bn_many(nets: list[nn.Module], batches) -> None:
    """``torch.optim.swa_utils.update_bn`` for several networks on the *same* batches: each batch (augmented once)
    goes through every network; BN running statistics become the cumulative average over the pass."""
    bns = [m for net in nets for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = {m: m.momentum for m in bns}
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    for net in nets:
        net.train()
    for batch in batches:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        for net in nets:
            net(x)
    for m in bns:
        m.momentum = momenta[m]
    for net in nets:
        net.eval()


@torch.no_grad()
def extract_many(extractors: list[nn.Module], batches) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Features of several extractors from one pass over ``batches`` (each batch prepared once): ([N, D] per
    extractor, labels [N]), on the device."""
    for e in extractors:
        e.eval()
    feats: list[list[torch.Tensor]] = [[] for _ in extractors]
    labels = []
    for x, y in batches:
        for k, e in enumerate(extractors):
            feats[k].append(e(x).float())
        labels.append(y)
    return [torch.cat(f) for f in feats], torch.cat(labels)
