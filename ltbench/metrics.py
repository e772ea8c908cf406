"""Metrics as pure functions of per-example prediction arrays (the arrays stored in ``predictions.npz``).

Computing every metric from the stored float32 arrays, not from the logits, means an independent audit of
``predictions.npz`` reproduces ``metrics.json`` exactly.
"""
from __future__ import annotations

import numpy as np
import torch

ECE_BINS = 15
MANY_MIN = 100   # many-shot: more than 100 training images
FEW_MAX = 20     # few-shot: fewer than 20 training images; medium: 20..100 inclusive


def prediction_arrays(log_probs: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Reduce [N, C] log-probabilities to the per-example arrays every metric needs."""
    log_probs = log_probs.detach().double().cpu()
    labels = labels.detach().long().cpu()
    probs = log_probs.exp()
    conf, pred = probs.max(dim=1)
    return {
        "labels": labels.numpy().astype(np.int64),
        "pred": pred.numpy().astype(np.int64),
        "confidence": conf.numpy().astype(np.float32),
        "log_prob_true": log_probs.gather(1, labels[:, None])[:, 0].numpy().astype(np.float32),
        "sq_prob_sum": (probs ** 2).sum(1).numpy().astype(np.float32),
    }


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(pred == labels))


def nll(log_prob_true: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class, nats per example."""
    return float(-np.mean(log_prob_true.astype(np.float64)))


def brier(sq_prob_sum: np.ndarray, log_prob_true: np.ndarray) -> float:
    """Mean over examples of sum_k (p_k - 1[k=y])^2 = sum_k p_k^2 - 2 p_y + 1."""
    p_true = np.exp(log_prob_true.astype(np.float64))
    return float(np.mean(sq_prob_sum.astype(np.float64) - 2.0 * p_true + 1.0))


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Equal-width bins over (0, 1]; a confidence on an edge belongs to the bin it closes, i.e. bins are (l, u]."""
    conf = confidence.astype(np.float64)
    correct = correct.astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count = np.zeros(n_bins)
    acc = np.full(n_bins, np.nan)
    mean_conf = np.full(n_bins, np.nan)
    for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sel = (conf > lo) & (conf <= hi)
        count[b] = sel.sum()
        if count[b]:
            acc[b] = correct[sel].mean()
            mean_conf[b] = conf[sel].mean()
    return {"edges": edges, "count": count, "acc": acc, "conf": mean_conf}


def ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error in percent: sum_b |B_b|/N * |acc(B_b) - conf(B_b)|."""
    bins = reliability_bins(confidence, correct, n_bins)
    n = len(confidence)
    used = bins["count"] > 0
    return 100.0 * float(np.sum(bins["count"][used] / n * np.abs(bins["acc"][used] - bins["conf"][used])))


def shot_groups(train_counts: np.ndarray) -> dict[str, np.ndarray]:
    """Many / medium / few class masks by training count (Kang et al.'s thresholds: >100, 20..100, <20)."""
    train_counts = np.asarray(train_counts)
    return {
        "many": train_counts > MANY_MIN,
        "medium": (train_counts >= FEW_MAX) & (train_counts <= MANY_MIN),
        "few": train_counts < FEW_MAX,
    }


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy (fraction) of each class on the test set; NaN for a class absent from the test set."""
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        sel = labels == c
        if sel.any():
            out[c] = float(np.mean(pred[sel] == c))
    return out


def compute_metrics(arrays: dict[str, np.ndarray], train_counts: np.ndarray) -> dict:
    """Every number of ``metrics.json`` from the prediction arrays and the training class counts."""
    labels, pred = arrays["labels"], arrays["pred"]
    correct = pred == labels
    num_classes = len(train_counts)
    per_class = per_class_accuracy(pred, labels, num_classes)
    out = {
        "acc": accuracy(pred, labels),
        "nll": nll(arrays["log_prob_true"]),
        "ece": ece(arrays["confidence"], correct),
        "brier": brier(arrays["sq_prob_sum"], arrays["log_prob_true"]),
    }
    for name, mask in shot_groups(train_counts).items():
        vals = per_class[mask]
        vals = vals[~np.isnan(vals)]
        out[f"acc_{name}"] = 100.0 * float(vals.mean()) if len(vals) else None
        out[f"n_classes_{name}"] = int(mask.sum())
    out["n_train"] = int(np.sum(train_counts))
    out["n_test"] = int(len(labels))
    out["num_classes"] = int(num_classes)
    return out
