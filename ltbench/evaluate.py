"""The evaluator: run a predictor over the balanced test set and reduce to per-example arrays and metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import compute_metrics, prediction_arrays

Predictor = Callable[[torch.Tensor], torch.Tensor]  # normalised images [B,3,H,W] -> log-probabilities [B,C]

FEATURE_SOURCES = ("base", "pool", "extractor")


@dataclass
class FeaturePredictor:
    """What a method that works on features returns: ``fn`` maps features of the *test* split, which only the
    evaluator computes, to log-probabilities. ``source`` names the features: ``base`` (the stage-1 extractor,
    [N, D]), ``pool`` (the SWAG pool with options ``pool``, [P, N, D]) or ``extractor`` (the module given,
    e.g. a backbone whose BN statistics stage 2 re-estimated). A method never holds test images or labels."""

    source: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    extractor: torch.nn.Module | None = None
    pool: dict | None = None

    def __post_init__(self) -> None:
        if self.source not in FEATURE_SOURCES:
            raise ValueError(f"source must be one of {FEATURE_SOURCES}, got {self.source!r}")


@torch.no_grad()
def test_log_probs(predictor: "FeaturePredictor", ctx) -> torch.Tensor:
    """Test log-probabilities [N, C] of a ``FeaturePredictor``; ``ctx`` is a stage-2 context holding the full data."""
    from .train.features import base_features, extract, swag_pool_features
    if predictor.source == "base":
        z = base_features(ctx, "test")["test"]
    elif predictor.source == "pool":
        z = swag_pool_features(ctx, **(predictor.pool or {}), split="test")["test"]
    else:
        z = extract(predictor.extractor, ctx.data.eval_batches("test", ctx.cfg.eval_batch_size, ctx.device))[0]
    return predictor.fn(z).float()


def log_softmax_predictor(net: torch.nn.Module) -> Predictor:
    def predict(x: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(net(x).float(), dim=1)
    return predict


@torch.no_grad()
def predict_log_probs(predictor: Predictor, data, device: torch.device, batch_size: int = 256,
                      split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    from .distributed import gather_ordered, rank_world
    sharded = rank_world()[1] > 1 and hasattr(data, "eval_indices")  # DDP: each rank predicts its shard
    outs, labels = [], []
    for x, y in data.eval_batches(split, batch_size, device, **({"sharded": True} if sharded else {})):
        outs.append(predictor(x).float().cpu())
        labels.append(y.cpu())
    if sharded:  # gather in dataset order; every example exactly once
        total = len(data.test_labels if split == "test" else data.train_labels)
        lp = torch.cat(outs) if outs else torch.zeros(0, data.num_classes)
        yy = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
        return gather_ordered(data.eval_indices(split), lp, yy, total=total)
    return torch.cat(outs), torch.cat(labels)


def evaluate(predictor: Predictor | torch.Tensor, data, device: torch.device, batch_size: int = 256
             ) -> tuple[dict[str, np.ndarray], dict, torch.Tensor]:
    """(prediction arrays, metrics, log-probabilities) on the test set.

    ``predictor`` is a function of test images, or the test log-probabilities themselves ([N, C], in test-set
    order) for methods that predict from cached test features.
    """
    if torch.is_tensor(predictor):
        log_probs, labels = predictor.float().cpu(), data.test_labels.cpu()
        if log_probs.shape != (len(labels), data.num_classes):
            raise ValueError(f"test log-probabilities have shape {tuple(log_probs.shape)}, expected "
                             f"({len(labels)}, {data.num_classes})")
    else:
        log_probs, labels = predict_log_probs(predictor, data, device, batch_size)
    arrays = prediction_arrays(log_probs, labels)
    return arrays, compute_metrics(arrays, data.class_counts()), log_probs
