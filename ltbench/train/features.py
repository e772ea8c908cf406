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


def swag_pool_features(ctx, pool_size: int, scale: float, diag_only: bool, bn: str) -> dict:
    """Train / test features under ``pool_size`` SWAG-sampled extractors: tensors [P, N, D].

    Only the extractor is perturbed (the classifier is re-trained in stage 2). ``bn='recompute'`` re-estimates
    each sample's BN statistics on one augmented pass over the training set (as the SWAG paper does);
    ``bn='swa'`` reuses the SWA statistics (cheaper; a deviation).
    """
    art, data, dev, bs = ctx.stage1, ctx.data, ctx.device, ctx.cfg.eval_batch_size
    opts = {"pool_size": pool_size, "scale": scale, "diag_only": diag_only, "bn": bn, "seed": ctx.cfg.seed}

    def compute() -> dict:
        gen = torch.Generator().manual_seed(10_000 + ctx.cfg.seed)
        mask = prefix_mask(art.network, "extractor.")
        trs, tes = [], []
        for p in range(pool_size):
            ctx.echo(f"stage 2: SWAG sample {p + 1}/{pool_size}: "
                     f"{'recomputing BN, ' if bn == 'recompute' else ''}extracting features")
            vec = art.swag.sample(scale, gen, diag_only=diag_only, mask=mask)
            bn_batches = (data.train_batches(ctx.cfg.stage1.batch_size, gen, dev) if bn == "recompute" else None)
            net = network_with_weights(art.network, vec, bn_batches)
            trs.append(extract(net.extractor, data.eval_batches("train", bs, dev))[0])
            tes.append(extract(net.extractor, data.eval_batches("test", bs, dev))[0])
        return {"train": torch.stack(trs), "test": torch.stack(tes), "options": opts}
    return cached(art.dir / "features" / f"swag-pool-{pool_key(opts)}.pt", compute, dev)
