"""Stage-2 methods: sampler, LWS, tau-norm, SRepr gradients, and every method end to end on both tiny sets."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from bench import cli
from conftest import AUDIT_TOOL
from ltbench.audit import check_run
from ltbench.config import resolve
from ltbench.data.samplers import class_balanced_indices
from ltbench.heads import tau_normalized_logits
from ltbench.method import Stage2Context
from ltbench.models import create_network
from ltbench.registry import get_dataset, get_method, method_names
from ltbench.train.stage1 import Stage1Artifact
from ltbench.train.swag import Swag
from methods.srepr import srepr_loss


def test_class_balanced_sampler_is_uniform_over_classes_chi_square():
    labels = torch.tensor([0] * 500 + [1] * 50 + [2] * 5 + [3] * 1)
    n = 40000
    idx = class_balanced_indices(labels, n, torch.Generator().manual_seed(0))
    counts = np.bincount(labels[idx].numpy(), minlength=4)
    chi2 = float(((counts - n / 4) ** 2 / (n / 4)).sum())
    assert chi2 < 16.27, counts          # chi-square, 3 d.o.f., p = 0.001
    # within a class, images are drawn uniformly too (class 2: 5 images, 4 d.o.f.)
    within = np.bincount(idx[labels[idx] == 2].numpy() - 550, minlength=5)
    exp = within.sum() / 5
    assert float(((within - exp) ** 2 / exp).sum()) < 18.47, within
    # an instance-balanced draw would be ~90% class 0: make sure the test can tell
    assert counts[0] < 0.3 * n


def test_tau_zero_is_the_original_classifier_and_tau_one_normalises():
    g = torch.Generator().manual_seed(0)
    z, w, b = torch.randn(7, 5, generator=g), torch.randn(3, 5, generator=g), torch.randn(3, generator=g)
    torch.testing.assert_close(tau_normalized_logits(z, w, b, 0.0), z @ w.T + b)
    unit = w / torch.sqrt((w ** 2).sum(1, keepdim=True))
    torch.testing.assert_close(tau_normalized_logits(z, w, None, 1.0), z @ unit.T)


def test_srepr_teacher_target_gets_no_gradient():
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(6, 4)
    z = torch.randn(5, 6, generator=g)
    zs = torch.randn(3, 5, 6, generator=g)
    y = torch.randint(4, (5,), generator=g)
    alpha, t = 0.4, 2.0
    loss, _ = srepr_loss(head, z, zs, y, alpha, t)
    grads = torch.autograd.grad(loss, list(head.parameters()))
    # independent formula with the teacher frozen as a constant
    with torch.no_grad():
        p_t = F.softmax(head(zs) / t, -1).mean(0)
    l_sr = F.cross_entropy(head(zs).reshape(15, 4), y.repeat(3))
    kl = (p_t * (p_t.log() - F.log_softmax(head(z) / t, -1))).sum(-1).mean()
    want = torch.autograd.grad((1 - alpha) * l_sr + alpha * t * t * kl, list(head.parameters()))
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b)
    # ... and it differs from the gradient when the teacher is not detached (so the test can fail)
    p_live = F.softmax(head(zs) / t, -1).mean(0)
    kl_live = (p_live * (p_live.log() - F.log_softmax(head(z) / t, -1))).sum(-1).mean()
    l_sr = F.cross_entropy(head(zs).reshape(15, 4), y.repeat(3))
    live = torch.autograd.grad((1 - alpha) * l_sr + alpha * t * t * kl_live, list(head.parameters()))
    assert not torch.allclose(live[0], grads[0])


def fit_and_predict(method, ctx: Stage2Context) -> torch.Tensor:
    """As the runner does it: the method fits on a train-only view; the evaluator applies its predictor."""
    from dataclasses import replace

    from ltbench.method import TrainOnly
    from ltbench.runner import apply_predictor
    out = apply_predictor(method.fit(replace(ctx, data=TrainOnly(ctx.data))), ctx)
    if torch.is_tensor(out):
        return out
    return torch.cat([out(x) for x, _ in ctx.data.eval_batches("test", 256, ctx.device)])


def test_a_method_cannot_reach_the_test_split():
    from ltbench.method import TrainOnly
    view = TrainOnly(get_dataset("cifar10-lt-tiny").load())
    assert len(view.train_labels) == 199 and view.num_classes == 10
    for touch in (lambda: view.test_labels, lambda: view.test_x, lambda: view.eval_batches("test", 8, "cpu")):
        with pytest.raises(AttributeError, match="never see"):
            touch()


def test_a_method_cannot_reach_the_test_files_of_a_split_list_dataset():
    """ImageNet-LT / iNat data carry the test images' paths (test_files): hidden too, as is any test_* name."""
    from types import SimpleNamespace

    from ltbench.method import TrainOnly
    view = TrainOnly(SimpleNamespace(train_files=["a.jpg"], test_files=["t.jpg"], test_anything=1, num_classes=2))
    assert view.train_files == ["a.jpg"] and view.num_classes == 2
    for name in ("test_files", "test_anything"):
        with pytest.raises(AttributeError, match="never see"):
            getattr(view, name)


def _ctx(tmp_path, method: str, **opts) -> Stage2Context:
    """A stage-2 context on cifar10-lt-tiny with a randomly initialised 'stage 1' and synthetic SWAG moments."""
    data = get_dataset("cifar10-lt-tiny").load()
    cfg = resolve(method, "cifar10-lt-tiny", None, "swa", 0, "cifar-tiny", stage2_epochs=2, method_options=opts)
    torch.manual_seed(0)
    net = create_network("resnet32", 10)
    swag = Swag.for_network(net, rank=3)
    for _ in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        swag.collect(net)
    net.eval()
    art = Stage1Artifact(net, swag, [], tmp_path / "stage1", 0.0)
    return Stage2Context(cfg=cfg, data=data, stage1=art, device=torch.device("cpu"),
                         generator=torch.Generator().manual_seed(1), workdir=tmp_path / "stage2", echo=lambda s: None)


@pytest.mark.parametrize("opts", [{"features": "cached"}, {"features": "augmented", "extractor_bn": "eval"}])
def test_lws_changes_only_the_scales(tmp_path, opts):
    """With the stage-1 BN statistics kept, LWS is exactly scales * stage-1 logits (augmented or cached features)."""
    ctx = _ctx(tmp_path, "lws")
    before = {k: v.clone() for k, v in ctx.stage1.network.state_dict().items()}
    log_probs = fit_and_predict(get_method("lws")(**opts), ctx)
    after = ctx.stage1.network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)      # nothing of the network moved
    scales = torch.tensor(ctx.info["lws_scales"])
    assert not torch.allclose(scales, torch.ones_like(scales))        # ... but the scales did
    with torch.no_grad():
        z = torch.cat([ctx.stage1.network.extractor(x) for x, _ in ctx.data.eval_batches("test", 256, ctx.device)])
        want = F.log_softmax(scales * ctx.stage1.network.head(z), 1)
    torch.testing.assert_close(log_probs, want, atol=1e-4, rtol=1e-4)


def test_srepr_never_touches_the_extractor(tmp_path):
    ctx = _ctx(tmp_path, "srepr", pool_size=3, samples_per_step=2)
    before = {k: v.clone() for k, v in ctx.stage1.network.state_dict().items()}
    log_probs = fit_and_predict(get_method("srepr")(pool_size=3, samples_per_step=2), ctx)
    assert all(p.grad is None for p in ctx.stage1.network.parameters())
    assert all(torch.equal(before[k], v) for k, v in ctx.stage1.network.state_dict().items())
    assert log_probs.shape == (200, 10) and torch.allclose(log_probs.exp().sum(1), torch.ones(200), atol=1e-5)
    assert len(ctx.log) == 2 and all(math.isfinite(r["loss"]) for r in ctx.log)


def test_unknown_method_option_is_rejected():
    from ltbench.errors import LtbenchError
    with pytest.raises(LtbenchError, match="unknown option"):
        get_method("srepr")(alhpa=0.3)


@pytest.mark.parametrize("dataset", ["cifar10-lt-tiny",  # the cifar10-lt-tiny case runs every method by default
                                     pytest.param("cifar100-lt-tiny", marks=pytest.mark.slow)])
def test_every_method_end_to_end_on_tiny_sets(tmp_path, dataset):
    res = CliRunner().invoke(cli, ["run", "--method", "all", "--dataset", dataset, "--results", str(tmp_path),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    runs = sorted(p.parent for p in (tmp_path / "runs" / dataset).glob("*/seed0/metrics.json"))
    want = sorted(f"{s}-{m}" for s in ("sgd", "swa") for m in method_names()
                  if not (get_method(m).requires_swag and s == "sgd"))
    assert [r.parent.name for r in runs] == want
    for d in runs:
        assert check_run(d) == [], d
        if AUDIT_TOOL.is_file():
            out = subprocess.run([sys.executable, str(AUDIT_TOOL), str(d), "--tol", "1e-4"], capture_output=True,
                                 text=True)
            assert out.returncode == 0, out.stdout
    tau_cfg = tmp_path / "runs" / dataset / "sgd-tau_norm" / "seed0" / "config.json"
    tau = json.loads(tau_cfg.read_text())["method_info"]
    assert len(tau["tau_sweep"]) == 21
    accs = [r["heldout_balanced_acc"] for r in tau["tau_sweep"]]
    if max(accs) - min(accs) >= 0.5:   # an informative sweep: the best held-out tau (ties: the smallest)
        assert tau["tau_selection"] == "holdout"
        assert min(r["tau"] for r in tau["tau_sweep"] if r["heldout_balanced_acc"] == max(accs)) == tau["tau"]
    else:                               # a degenerate one is reported and the fixed tau used, never tau = 0
        assert tau["tau_selection"].startswith("fixed: held-out sweep degenerate") and tau["tau"] == 1.0
    # swa-ce and sgd-ce come from different stage-1 runs; srepr predicts with the single SWA model
    ce_sgd = np.load(tmp_path / "runs" / dataset / "sgd-ce" / "seed0" / "predictions.npz")["confidence"]
    ce_swa = np.load(tmp_path / "runs" / dataset / "swa-ce" / "seed0" / "predictions.npz")["confidence"]
    assert not np.array_equal(ce_sgd, ce_swa)
