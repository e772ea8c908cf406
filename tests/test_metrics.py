"""Metrics against hand-computed cases, a direct formula, and torchmetrics."""
import math

import numpy as np
import pytest
import torch

from ltbench.metrics import (brier, compute_metrics, ece, nll, prediction_arrays, reliability_bins, shot_groups)


def _arrays(probs, labels):
    return prediction_arrays(torch.log(torch.tensor(probs, dtype=torch.float64)), torch.tensor(labels))


def test_hand_computed_case():
    probs = [[0.7, 0.2, 0.1],   # y=0 correct, conf 0.7
             [0.1, 0.6, 0.3],   # y=2 wrong (pred 1), conf 0.6
             [0.3, 0.3, 0.4],   # y=2 correct, conf 0.4
             [0.5, 0.25, 0.25]]  # y=1 wrong (pred 0), conf 0.5
    labels = [0, 2, 2, 1]
    a = _arrays(probs, labels)
    assert list(a["pred"]) == [0, 1, 2, 0]
    m = compute_metrics(a, np.array([150, 50, 10]))
    assert m["acc"] == pytest.approx(50.0)
    assert m["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.4) + math.log(0.25)) / 4, abs=1e-6)
    by_hand_brier = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.6**2 + 0.7**2)
                     + (0.3**2 + 0.3**2 + 0.6**2) + (0.5**2 + 0.75**2 + 0.25**2)) / 4
    assert m["brier"] == pytest.approx(by_hand_brier, abs=1e-6)
    # every confidence sits alone in its 15-bin bucket: ECE = mean |correct - conf|
    assert m["ece"] == pytest.approx(100 * (0.3 + 0.6 + 0.6 + 0.5) / 4, abs=1e-4)
    # groups by training count: class 0 many (150), class 1 medium (50), class 2 few (10)
    assert m["acc_many"] == pytest.approx(100.0) and m["acc_medium"] == pytest.approx(0.0)
    assert m["acc_few"] == pytest.approx(50.0)
    assert (m["n_classes_many"], m["n_classes_medium"], m["n_classes_few"]) == (1, 1, 1)
    assert (m["n_train"], m["n_test"]) == (210, 4)


def test_ece_bins_are_closed_on_the_right():
    edge = np.linspace(0, 1, 16)[3]                 # 0.2, the upper edge of bin 2
    conf = np.array([edge, 0.21])
    correct = np.array([True, False])
    # (l, u]: 0.2 falls in bin (0.133, 0.2], 0.21 in (0.2, 0.267] -> two singleton bins
    assert ece(conf, correct) == pytest.approx(100 * (0.5 * (1 - 0.2) + 0.5 * 0.21))
    # a half-open [l, u) rule would pool both into one bin: 100 * |0.5 - 0.205| = 29.5; make sure we differ
    assert ece(conf, correct) != pytest.approx(29.5)
    b = reliability_bins(conf, correct)
    assert b["count"][2] == 1 and b["count"][3] == 1
    # confidence exactly 1.0 belongs to the last bin (it would fall outside every [l, u) bin)
    assert reliability_bins(np.array([1.0]), np.array([True]))["count"][14] == 1
    assert ece(np.array([1.0, 1.0]), np.array([True, False])) == pytest.approx(50.0)


def test_shot_group_thresholds():
    g = shot_groups(np.array([101, 100, 20, 19, 5000, 1]))
    assert list(g["many"]) == [True, False, False, False, True, False]
    assert list(g["medium"]) == [False, True, True, False, False, False]
    assert list(g["few"]) == [False, False, False, True, False, True]


def test_empty_group_is_null():
    a = _arrays([[0.9, 0.1], [0.2, 0.8]], [0, 1])
    m = compute_metrics(a, np.array([500, 300]))
    assert m["acc_medium"] is None and m["acc_few"] is None and m["acc_many"] == pytest.approx(100.0)


def test_against_torchmetrics_and_direct_formulas():
    torchmetrics = pytest.importorskip("torchmetrics")
    from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError
    g = torch.Generator().manual_seed(0)
    n, c = 2000, 10
    logits = torch.randn(n, c, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(c, (n,), generator=g)
    logp = torch.log_softmax(logits, 1)
    a = prediction_arrays(logp, labels)
    m = compute_metrics(a, np.full(c, 50))
    p = logp.exp().float()
    tm_ece = MulticlassCalibrationError(num_classes=c, n_bins=15, norm="l1")(p, labels).item()
    tm_acc = MulticlassAccuracy(num_classes=c, average="micro")(p, labels).item()
    assert m["ece"] == pytest.approx(100 * tm_ece, abs=1e-3)
    assert m["acc"] == pytest.approx(100 * tm_acc, abs=1e-6)
    assert m["nll"] == pytest.approx(torch.nn.functional.nll_loss(logp, labels).item(), abs=1e-5)
    onehot = torch.nn.functional.one_hot(labels, c).double()
    assert m["brier"] == pytest.approx(((logp.exp() - onehot) ** 2).sum(1).mean().item(), abs=1e-5)
    assert nll(a["log_prob_true"]) == m["nll"] and brier(a["sq_prob_sum"], a["log_prob_true"]) == m["brier"]
