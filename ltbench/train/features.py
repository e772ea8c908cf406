"""Features of frozen extractors, computed once and cached beside the stage-1 artifact.

Stage-2 methods that keep the extractor frozen (cRT, LWS, tau-norm, SWAG, SRepr) train only a classifier, so the
extractor runs once per image (per pool member) instead of once per stage-2 epoch. The SWAG pool (P sampled
extractors, each with its own recomputed BN statistics) is shared by ``swag`` and ``srepr``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..checkpoint import atomic_torch_save, file_lock, load_checkpoint
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


def base_features(ctx) -> dict:
    """Train (un-augmented) and test features of the stage-1 extractor (SGD last iterate or SWA average)."""
    data, dev, bs = ctx.data, ctx.device, ctx.cfg.eval_batch_size
    ext = ctx.stage1.network.extractor

    def compute() -> dict:
        ctx.echo("stage 2: extracting features of the frozen stage-1 extractor")
        tr, ytr = extract(ext, data.eval_batches("train", bs, dev))
        te, yte = extract(ext, data.eval_batches("test", bs, dev))
        return {"train": tr, "train_y": ytr, "test": te, "test_y": yte}
    return cached(ctx.stage1.dir / "features" / "base.pt", compute, dev)


def pool_key(opts: dict) -> str:
    return hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:12]


def swag_pool_features(ctx, pool_size: int, scale: float, diag_only: bool, bn: str, one_pass: bool = False,
                       lowrank_norm: str = "max_rank") -> dict:
    """Train / test features under ``pool_size`` SWAG-sampled extractors: tensors [P, N, D].

    Only the extractor is perturbed (the classifier is re-trained in stage 2). ``bn='recompute'`` re-estimates
    each sample's BN statistics on one augmented pass over the training set (as the SWAG paper does);
    ``bn='swa'`` reuses the SWA statistics (cheaper; a deviation).

    ``one_pass=True`` (see ``pool_features_one_pass``) feeds every batch, augmented once, to all members at once:
    one BN pass and one feature pass per split for the whole pool (and the base extractor) instead of one per
    member. It is a separate cache entry: its BN statistics come from one shared augmentation draw.
    """
    art, data, dev, bs = ctx.stage1, ctx.data, ctx.device, ctx.cfg.eval_batch_size
    opts = {"pool_size": pool_size, "scale": scale, "diag_only": diag_only, "bn": bn, "seed": ctx.cfg.seed,
            "lowrank_norm": lowrank_norm}
    if one_pass:
        opts["one_pass"] = True  # only when set: the default cache key stays what it was

    def compute() -> dict:
        if one_pass:
            return pool_features_one_pass(ctx, pool_size, scale, diag_only, bn, opts, lowrank_norm)
        gen = torch.Generator().manual_seed(10_000 + ctx.cfg.seed)
        mask = prefix_mask(art.network, "extractor.")
        trs, tes = [], []
        for p in range(pool_size):
            ctx.echo(f"stage 2: SWAG sample {p + 1}/{pool_size}: "
                     f"{'recomputing BN, ' if bn == 'recompute' else ''}extracting features")
            vec = art.swag.sample(scale, gen, diag_only=diag_only, mask=mask, lowrank_norm=lowrank_norm)
            bn_batches = (data.train_batches(ctx.cfg.stage1.batch_size, gen, dev) if bn == "recompute" else None)
            net = network_with_weights(art.network, vec, bn_batches)
            trs.append(extract(net.extractor, data.eval_batches("train", bs, dev))[0])
            tes.append(extract(net.extractor, data.eval_batches("test", bs, dev))[0])
        return {"train": torch.stack(trs), "test": torch.stack(tes), "options": opts}
    return cached(art.dir / "features" / f"swag-pool-{pool_key(opts)}.pt", compute, dev)


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


def pool_features_one_pass(ctx, pool_size: int, scale: float, diag_only: bool, bn: str, opts: dict,
                           lowrank_norm: str = "max_rank") -> dict:
    """The SWAG pool's features with one pass over the data per augmentation draw / split for all members.

    All ``pool_size`` weight vectors are drawn first (the same draws as the per-member path when ``bn='swa'``),
    then: one augmented pass re-estimates every member's BN statistics from the same batches, one pass over the
    train split and one over the test split give the features of every member and of the base (stage-1) extractor.
    The base features are stored in the ``base_features`` cache when it has none yet, so the later call is free.
    """
    art, data, dev, bs = ctx.stage1, ctx.data, ctx.device, ctx.cfg.eval_batch_size
    gen = torch.Generator().manual_seed(10_000 + ctx.cfg.seed)
    mask = prefix_mask(art.network, "extractor.")
    vecs = [art.swag.sample(scale, gen, diag_only=diag_only, mask=mask, lowrank_norm=lowrank_norm)
            for _ in range(pool_size)]
    nets = [network_with_weights(art.network, v, None) for v in vecs]
    if bn == "recompute":
        ctx.echo(f"stage 2: recomputing BN of {pool_size} SWAG samples in one augmented pass")
        update_bn_many(nets, data.train_batches(ctx.cfg.stage1.batch_size, gen, dev))
    ctx.echo(f"stage 2: extracting features of the base extractor and {pool_size} SWAG samples in one pass")
    exts = [art.network.extractor] + [n.extractor for n in nets]
    tr, ytr = extract_many(exts, data.eval_batches("train", bs, dev))
    te, yte = extract_many(exts, data.eval_batches("test", bs, dev))
    base = {"train": tr[0], "train_y": ytr, "test": te[0], "test_y": yte}
    cached(art.dir / "features" / "base.pt", lambda: base, dev)
    return {"train": torch.stack(tr[1:]), "test": torch.stack(te[1:]), "options": opts}
