"""One data pass for the whole SWAG pool: the same features as the per-member path (bn='swa'), BN statistics equal
to ``update_bn`` per member on the same batches, base features cached on the way, separate cache entries."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from ltbench.models import create_network
from ltbench.registry import get_dataset
from ltbench.train.features import base_features, swag_pool_features, update_bn_many
from ltbench.train.swag import Swag, network_with_weights


def _ctx(tmp_path):
    full = get_dataset("cifar10-lt-tiny").load()
    data = full.subset_train(np.arange(0, 199, 8)).with_test(full.test_x[:16], full.test_y[:16])  # keep it quick
    torch.manual_seed(0)
    net = create_network("resnet32", data.num_classes).eval()
    swag = Swag.for_network(net, rank=3)
    g = torch.Generator().manual_seed(1)
    base = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    for _ in range(4):
        swag.collect_vector(base + 0.01 * torch.randn(base.shape, generator=g))
    art = SimpleNamespace(network=net, swag=swag, dir=tmp_path / "s1")
    cfg = SimpleNamespace(eval_batch_size=32, seed=0, stage1=SimpleNamespace(batch_size=16))
    return SimpleNamespace(stage1=art, data=data, device=torch.device("cpu"), cfg=cfg, echo=lambda s: None)


def test_one_pass_equals_per_member_with_swa_bn(tmp_path):
    ctx = _ctx(tmp_path)
    a = swag_pool_features(ctx, 2, 0.5, False, "swa")
    b = swag_pool_features(ctx, 2, 0.5, False, "swa", one_pass=True)
    assert a["train"].shape == b["train"].shape == (2, len(ctx.data.train_labels), 64)
    torch.testing.assert_close(a["train"], b["train"])
    at = swag_pool_features(ctx, 2, 0.5, False, "swa", split="test")
    bt = swag_pool_features(ctx, 2, 0.5, False, "swa", one_pass=True, split="test")
    torch.testing.assert_close(at["test"], bt["test"])
    assert b["options"]["one_pass"] is True and "one_pass" not in a["options"]
    members = sorted(p.name for p in (tmp_path / "s1" / "features").glob("swag-pool-*-members.pt"))
    assert len(members) == 2  # separate cache entries
    # the one-pass call also cached the base features; they equal a fresh extraction
    for split in ("train", "test"):
        path = tmp_path / "s1" / "features" / f"base-{split}.pt"
        assert path.is_file()
        cached = base_features(ctx, split)
        path.unlink()
        torch.testing.assert_close(cached[split], base_features(ctx, split)[split])


def test_update_bn_many_equals_update_bn_per_network(tmp_path):
    ctx = _ctx(tmp_path)
    art = ctx.stage1
    g = torch.Generator().manual_seed(3)
    vecs = [art.swag.sample(0.5, g) for _ in range(2)]
    batches = list(ctx.data.train_batches(16, torch.Generator().manual_seed(4), ctx.device))
    one = [network_with_weights(art.network, v, batches) for v in vecs]
    many = [network_with_weights(art.network, v, None) for v in vecs]
    update_bn_many(many, batches)
    for a, b in zip(one, many):
        assert not b.training
        for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            if x.is_floating_point():
                torch.testing.assert_close(x, y, msg=k)
    # and the statistics did change from the stage-1 ones
    sa = dict(art.network.state_dict())
    key = next(k for k in sa if k.endswith("running_mean"))
    assert not torch.allclose(sa[key], many[0].state_dict()[key])


def test_one_pass_recompute_runs(tmp_path, monkeypatch):
    from ltbench.progress import ACTIVITY
    begun: list[str] = []
    begin = ACTIVITY.begin
    monkeypatch.setattr(ACTIVITY, "begin", lambda label, *a, **k: (begun.append(label), begin(label, *a, **k))[1])
    ctx = _ctx(tmp_path)
    p = swag_pool_features(ctx, 2, 0.5, False, "recompute", one_pass=True)
    t = swag_pool_features(ctx, 2, 0.5, False, "recompute", one_pass=True, split="test")
    assert torch.isfinite(p["train"]).all() and t["test"].shape[0] == 2
    assert not torch.allclose(p["train"][0], p["train"][1])
    # each one-pass pass is the grid's heartbeat line while it runs (it has no per-sample steps), then none
    assert begun == ["SWAG pool: BN pass of 2 samples in one pass", "SWAG pool: train features, 2 samples in one pass",
                     "SWAG pool: test features, 2 samples in one pass"]
    assert ACTIVITY.text() is None


def test_train_and_test_features_come_from_the_same_cached_pool_members(tmp_path):
    """The pool is drawn (and its BN recomputed) once: the evaluator's test features use the very networks the
    method trained on, recomputed from the cached members they equal a direct extraction."""
    from ltbench.train.features import extract, pool_key, pool_members, pool_options
    ctx = _ctx(tmp_path)
    tr = swag_pool_features(ctx, 2, 0.5, False, "recompute")
    te = swag_pool_features(ctx, 2, 0.5, False, "recompute", split="test")
    opts = pool_options(ctx, 2, 0.5, False, "recompute")
    members = pool_members(ctx, opts, pool_key(opts))
    net = create_network("resnet32", ctx.data.num_classes)
    net.load_state_dict(members[1])
    net.eval()
    z_tr = extract(net.extractor, ctx.data.eval_batches("train", 32, ctx.device))[0]
    z_te = extract(net.extractor, ctx.data.eval_batches("test", 32, ctx.device))[0]
    torch.testing.assert_close(tr["train"][1], z_tr)
    torch.testing.assert_close(te["test"][1], z_te)
