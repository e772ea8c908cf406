"""The protocol fixes against the reference code: stage-1 precision, tau-norm's bias and tau rule, the oracle row,
cRT/LWS on augmented images with the backbone's BN in train mode, SWAG's low-rank normaliser and snapshot count,
and post-hoc logit adjustment. Each test fails on the behaviour it replaces (noted per test)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltbench.config import resolve
from ltbench.errors import LtbenchError
from ltbench.method import OracleCandidates
from ltbench.models import create_network
from ltbench.registry import get_method
from ltbench.runner import apply_predictor, pick_oracle
from ltbench.train import loop
from ltbench.train.swag import Swag
from test_methods import _ctx  # the stage-2 context on cifar10-lt-tiny with a random "stage 1"


# ---- stage-1 precision -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_follows_the_cpu_capability(monkeypatch, native, want):
    """Old: bf16 was never used on a CPU, whatever it could do."""
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
    assert loop.resolve_precision("auto", torch.device("cpu")) == want
    assert loop.resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert loop.resolve_precision("fp32", torch.device("cuda")) == "fp32"
    with loop.autocast_for(torch.device("cpu"), loop.resolve_precision("auto", torch.device("cpu"))):
        out = torch.nn.Linear(4, 3)(torch.randn(2, 4))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)


def test_precision_is_recorded_and_keys_the_stage1_cache(monkeypatch):
    cfg = resolve("ce", "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny", device="cpu")
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)
    fp32_key, d = cfg.stage1_key(), cfg.to_dict()
    assert d["stage1_precision"] == "fp32" and d["stage1"]["precision"] == "auto"
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: True)
    assert cfg.to_dict()["stage1_precision"] == "bf16"
    assert cfg.stage1_key() != fp32_key   # a bf16 network is another network: never reused as the fp32 one


# ---- tau-norm ----------------------------------------------------------------------------------------------------

def fit_and_predict(method, ctx) -> torch.Tensor:
    """As the runner does it: fit on a train-only view, the evaluator applies the predictor to the test split."""
    from dataclasses import replace

    from ltbench.method import TrainOnly
    return apply_predictor(method.fit(replace(ctx, data=TrainOnly(ctx.data))), ctx)


def _test_logits(ctx, tau: float, bias: bool) -> torch.Tensor:
    net = ctx.stage1.network
    with torch.no_grad():
        z = torch.cat([net.extractor(x) for x, _ in ctx.data.eval_batches("test", 256, ctx.device)])
    w = net.head.weight.detach()
    out = z @ (w / w.norm(dim=1, keepdim=True) ** tau).T
    return out + net.head.bias.detach() if bias else out


def test_tau_norm_drops_the_bias_by_default(tmp_path):
    """Old default keep_bias=True: the head-favouring bias was kept (Kang's tau_norm.py never uses it)."""
    ctx = _ctx(tmp_path, "tau_norm", selection="fixed", tau=0.7)
    got = fit_and_predict(get_method("tau_norm")(selection="fixed", tau=0.7), ctx)
    torch.testing.assert_close(got, F.log_softmax(_test_logits(ctx, 0.7, bias=False), 1), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, F.log_softmax(_test_logits(ctx, 0.7, bias=True), 1), atol=1e-3)


def test_a_sweep_that_cannot_tell_the_taus_apart_is_reported_not_resolved_to_zero():
    """Old: a flat sweep silently chose the smallest tau (0): tau-norm then returned CE's predictions."""
    from methods.tau_norm import choose_tau
    flat = [{"tau": t, "heldout_balanced_acc": 100.0} for t in (0.0, 0.5, 1.0)]
    tau, how, spread = choose_tau(flat, "holdout", 1.0, 0.5, "fixed")
    assert tau == 1.0 and how.startswith("fixed: held-out sweep degenerate") and spread == 0.0
    with pytest.raises(LtbenchError, match="cannot tell the taus apart"):
        choose_tau(flat, "holdout", 1.0, 0.5, "error")
    informative = [{"tau": 0.0, "heldout_balanced_acc": 40.0}, {"tau": 0.5, "heldout_balanced_acc": 47.0},
                   {"tau": 1.0, "heldout_balanced_acc": 47.0}]
    assert choose_tau(informative, "holdout", 1.0, 0.5, "fixed") == (0.5, "holdout", 7.0)


def test_a_sweep_saturated_at_the_ceiling_is_degenerate_even_when_its_spread_is_wide():
    """Old: only the spread was checked. The full-schedule CIFAR-100-LT IF100 sweep (no bias) scored 100 % for
    tau 0-0.3 and 82.9 % at tau 2: spread 17 points, so tau = 0 was chosen (test acc 40.53 vs 44.15 at tau 1)."""
    from methods.tau_norm import choose_tau
    accs = [100.0, 100.0, 100.0, 100.0, 99.98, 99.47, 95.05, 82.93]
    sweep = [{"tau": t, "heldout_balanced_acc": a} for t, a in zip((0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 1.5, 2.0), accs)]
    tau, how, spread = choose_tau(sweep, "holdout", 1.0, 0.5, "fixed")
    assert tau == 1.0 and how.startswith("fixed: held-out sweep degenerate (best 100.00 >= ceiling 99.0")
    assert spread == pytest.approx(100.0 - 82.93)
    with pytest.raises(LtbenchError, match="cannot tell the taus apart"):
        choose_tau(sweep, "holdout", 1.0, 0.5, "error")
    # the same sweep below the ceiling is informative again: the best tau (smallest on ties) is taken
    assert choose_tau(sweep, "holdout", 1.0, 0.5, "fixed", ceiling=100.5)[:2] == (0.0, "holdout")


def test_the_oracle_row_is_chosen_by_the_evaluator_on_test_accuracy(tmp_path):
    ctx = _ctx(tmp_path, "tau_norm_oracle")
    oc = get_method("tau_norm_oracle")(taus=[0.0, 0.5, 1.0, 1.5]).fit(ctx)
    assert isinstance(oc, OracleCandidates)           # the method itself never sees test labels
    chosen = pick_oracle(oc, ctx)
    y = ctx.data.test_labels.numpy()
    accs = {t: float((_test_logits(ctx, t, bias=False).argmax(1).numpy() == y).mean()) for t in (0.0, 0.5, 1.0, 1.5)}
    best = max(accs, key=lambda t: (accs[t], -t))
    assert ctx.info["tau"] == best and ctx.info["oracle"] is True
    torch.testing.assert_close(chosen, F.log_softmax(_test_logits(ctx, best, bias=False), 1), atol=1e-4, rtol=1e-4)
    assert [r["test_acc"] for r in ctx.info["oracle_sweep"]] == pytest.approx([100 * accs[t] for t in accs])


# ---- cRT / LWS in the reference regime ------------------------------------------------------------------------------

def _bn_stats(net) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_crt_defaults_follow_classifier_balancing():
    """Old: features extracted once, un-augmented, backbone in eval mode."""
    opts = get_method("crt").defaults
    assert opts["features"] == "augmented" and opts["extractor_bn"] == "train" and opts["balanced"] is True


def test_crt_with_bn_train_re_estimates_bn_on_augmented_batches_but_never_moves_weights(tmp_path):
    ctx = _ctx(tmp_path, "crt")
    net = ctx.stage1.network
    w_before = {k: v.clone() for k, v in net.state_dict().items()}
    seen = []
    real = ctx.data.train_batches

    def spy(*a, **kw):
        seen.append(kw)
        return real(*a, **kw)
    ctx.data.train_batches = spy
    log_probs = fit_and_predict(get_method("crt")(), ctx)
    assert seen and all(kw.get("augment") is True and kw.get("balanced") is True for kw in seen)
    assert all(torch.equal(w_before[k], v) for k, v in net.state_dict().items())  # stage 1 untouched (copy)
    # the test predictions come from the re-estimated BN statistics: not the stage-1 ones
    cached = get_method("crt")(features="cached")
    ctx2 = _ctx(tmp_path / "b", "crt", features="cached")
    assert log_probs.shape == (200, 10)
    assert not torch.allclose(log_probs, fit_and_predict(cached, ctx2), atol=1e-3)


def test_bn_train_mode_changes_running_stats_and_eval_mode_keeps_them():
    from ltbench.train.head import head_on_frozen_extractor
    torch.manual_seed(0)
    net = create_network("resnet32", 10)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(10, (16,))
    for bn, changes in (("eval", False), ("train", True)):
        ext = create_network("resnet32", 10).extractor
        ext.load_state_dict(net.extractor.state_dict())
        before = _bn_stats(ext)
        loss, _, _ = head_on_frozen_extractor(torch.nn.Linear(64, 10), ext, bn)((x, y))
        loss.backward()
        assert all(p.grad is None for p in ext.parameters())           # no gradient reaches the backbone
        moved = any(not torch.equal(a, b) for a, b in zip(before, _bn_stats(ext)))
        assert moved is changes


# ---- SWAG ----------------------------------------------------------------------------------------------------------

def test_swag_low_rank_term_is_normalised_by_the_maximum_rank_as_the_reference():
    """Old: divided by sqrt(k - 1), k the columns kept (6x off after 15 epochs with K = 20)."""
    g = torch.Generator().manual_seed(0)
    s = Swag(5, rank=20)
    vecs = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(4)]
    for v in vecs:
        s.collect_vector(v)
    mean = torch.stack(vecs).mean(0)
    var = torch.stack([v * v for v in vecs]).mean(0) - mean ** 2
    # the reference's deviation columns: each snapshot minus the running mean after it was added
    run = [torch.stack(vecs[:i + 1]).mean(0) for i in range(4)]
    d = torch.stack([vecs[i] - run[i] for i in range(4)])
    want = torch.diag(var) + d.T @ d / (20 - 1)
    torch.testing.assert_close(s.covariance(), want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(s.covariance(lowrank_norm="kept"), torch.diag(var) + d.T @ d / 3, atol=1e-6,
                               rtol=1e-5)
    # one sample, replayed with the same generator stream:
    # theta = mean + sqrt(scale) (sqrt(var) z1 + D^T z2 / sqrt(K-1))
    theta = s.sample(0.5, torch.Generator().manual_seed(7))
    g2 = torch.Generator().manual_seed(7)
    z1, z2 = torch.randn(5, generator=g2, dtype=torch.float64), torch.randn(4, generator=g2, dtype=torch.float64)
    torch.testing.assert_close(theta, mean + 0.5 ** 0.5 * (var.sqrt() * z1 + d.T @ z2 / 19 ** 0.5), atol=1e-5,
                               rtol=1e-5)


def test_swag_methods_refuse_a_schedule_with_fewer_than_two_snapshots():
    """Old: --epochs 2 collected 1 snapshot and every 'SWAG sample' equalled the SWA mean, silently."""
    with pytest.raises(LtbenchError, match="at least 2 SWA snapshots"):
        resolve("srepr", "cifar10-lt-tiny", None, "swa", 0, "cifar-tiny", epochs=2)
    ok = resolve("srepr", "cifar10-lt-tiny", None, "swa", 0, "cifar-tiny", epochs=6)
    assert ok.to_dict()["swa_snapshots"] == ok.swa_snapshots >= 2
    # SWA itself (ce on --stage1 swa) may average a single snapshot; the count is recorded
    one = resolve("ce", "cifar10-lt-tiny", None, "swa", 0, "cifar-tiny", epochs=2)
    assert json.loads(json.dumps(one.to_dict()))["swa_snapshots"] == 1


# ---- post-hoc logit adjustment ------------------------------------------------------------------------------------

def test_logit_adjustment_matches_menon_et_al_formula(tmp_path):
    ctx = _ctx(tmp_path, "logit_adjust", tau=1.5)
    predict = get_method("logit_adjust")(tau=1.5).fit(ctx)
    x, _ = next(ctx.data.eval_batches("test", 64, ctx.device))
    with torch.no_grad():
        logits = ctx.stage1.network(x).numpy().astype(np.float64)
        got = predict(x).numpy()
    counts = ctx.data.class_counts().astype(np.float64)
    adj = logits - 1.5 * np.log(counts / counts.sum())
    want = adj - adj.max(1, keepdims=True)
    want = want - np.log(np.exp(want).sum(1, keepdims=True))
    np.testing.assert_allclose(got, want, atol=1e-4)
    # tau = 0 is the plain network
    plain = get_method("logit_adjust")(tau=0.0).fit(ctx)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), F.log_softmax(ctx.stage1.network(x), 1))
