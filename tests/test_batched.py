"""Batched stage 1: M networks trained as one stacked network equal each network trained alone by train_stage1.

The exact equivalence is tested in float64: there the stacked computation (grouped convolutions, per-network BN
channels, per-network lr in StackedSGD) and M separate trainings are the same arithmetic up to summation order,
so after several steps they agree to ~1e-10. In float32 the grouped and the per-network convolution kernels round
differently (~1e-7 relative per op) and training amplifies that (the first SGD step already moves conv weights
apart by ~1e-5 on random data), so float32 is checked where the amplification has not started: one forward and
backward pass.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ltbench.checkpoint import load_checkpoint
from ltbench.config import resolve
from ltbench.models import create_network
from ltbench.registry import get_dataset
from ltbench.train.batched import batch_key, train_stage1_batched
from ltbench.train.stacked import StackedResNet32
from ltbench.train.stage1 import get_stage1, stage1_dir, train_stage1
from tiny_data import float64_pipeline, small

CPU = torch.device("cpu")
# (mode, seed): an SGD and two SWA networks, one SWA sharing the SGD network's seed (same init, other schedule)
MEMBERS = (("sgd", 0), ("swa", 1), ("swa", 0))
EPOCHS = 3


def _cfgs(epochs: int = EPOCHS):
    cfgs = [resolve("ce", "cifar100-lt-tiny", None, mode, seed, "cifar-tiny", epochs=epochs, device="cpu")
            for mode, seed in MEMBERS]
    for c in cfgs:  # 24 images in batches of 10: 3 steps per epoch, the last one partial
        c.stage1.batch_size = 10
        c.stage1.swag_rank = 3
        c.stage1.swa_lr = 0.02         # SWA networks: cosine towards 0.02, then constant; SGD: cosine to 0
        c.stage1.warmup_epochs = 10.0  # scaled by epochs / 30: a third of the first epoch's steps are warm-up
        c.stage1.swa_start = 10        # scaled: SWA networks average the last two epochs
    return cfgs


def _data():
    return small(get_dataset("cifar100-lt-tiny").load(None, None), 24)


@pytest.fixture
def float64():
    """Both trainers in float64: networks via the default dtype, input batches via the data pipeline."""
    with float64_pipeline():
        yield


def test_batched_equals_alone_in_float64(float64, tmp_path, capsys):
    cfgs, data = _cfgs(), _data()
    assert len({batch_key(c) for c in cfgs}) == 1
    assert cfgs[1].stage1_schedule()["swa_start"] == 1 and cfgs[0].stage1.lr != cfgs[0].stage1.swa_lr
    alone = []
    for i, c in enumerate(cfgs):
        train_stage1(c, data, CPU, tmp_path / f"alone{i}", echo=lambda s: None)
        alone.append(load_checkpoint(tmp_path / f"alone{i}" / "final.pt"))
    # live progress (stderr is not a terminal here: plain lines): each SWA network's BN pass closes with its count
    err = capsys.readouterr().err.splitlines()
    assert sum(line.startswith("stage 1: SWA BN pass: done, 24 img in ") for line in err) == 2
    lines: list[str] = []
    dirs = train_stage1_batched(cfgs, data, CPU, echo=lines.append)
    err = capsys.readouterr().err.splitlines()
    for seed in (1, 0):
        assert sum(line.startswith(f"stage 1 [swa/seed{seed}]: SWA BN pass: done, 24 img in ") for line in err) == 1
    assert dirs == [stage1_dir(c, data) for c in cfgs]
    assert sum("epoch" in s for s in lines) == EPOCHS
    for c, a, d in zip(cfgs, alone, dirs):
        b = load_checkpoint(d / "final.pt")
        assert not (d / "ckpt.pt").exists()
        assert set(b) == set(a) and set(b["network"]) == set(a["network"])
        for k, v in a["network"].items():  # parameters and BN statistics (the SWA ones recomputed per network)
            torch.testing.assert_close(b["network"][k], v, rtol=0, atol=1e-9, msg=f"{c.stage1_mode} {c.seed} {k}")
        assert [r["epoch"] for r in b["log"]] == [r["epoch"] for r in a["log"]]
        np.testing.assert_allclose([r["loss"] for r in b["log"]], [r["loss"] for r in a["log"]], rtol=1e-6)
        np.testing.assert_allclose([r["lr"] for r in b["log"]], [r["lr"] for r in a["log"]], rtol=1e-12)
        if c.stage1_mode == "sgd":
            assert a["swag"] is None and b["swag"] is None
            continue
        assert b["swag"]["n"] == a["swag"]["n"] == 2 and b["swag"]["rank"] == a["swag"]["rank"]
        for k in ("mean", "sq_mean", "dev"):
            torch.testing.assert_close(b["swag"][k], a["swag"][k], rtol=0, atol=1e-9, msg=k)
    # the schedules really differed: the SGD and the SWA network of seed 0 started equal and ended apart
    w_sgd = load_checkpoint(dirs[0] / "final.pt")["network"]["head.weight"]
    w_swa = load_checkpoint(dirs[2] / "final.pt")["network"]["head.weight"]
    assert float((w_sgd - w_swa).abs().max()) > 1e-3
    # get_stage1 finds the batched artifact and does not retrain
    said: list[str] = []
    art = get_stage1(cfgs[1], data, CPU, echo=said.append)
    assert said == [f"stage 1: reusing {dirs[1]}"] and art.swag is not None and art.swag.n == 2


def test_stacked_forward_and_gradient_in_float32():
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(create_network("resnet32", 10))
    wide = StackedResNet32.from_networks(nets)
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(16, 3, 32, 32, generator=g) for _ in nets]
    ys = [torch.randint(0, 10, (16,), generator=g) for _ in nets]
    logits = wide(torch.cat(xs, 1))
    F.cross_entropy(logits.reshape(48, 10), torch.cat(ys), reduction="none").view(3, 16).mean(1).sum().backward()
    for i, (net, x, y) in enumerate(zip(nets, xs, ys)):
        out = net(x)
        F.cross_entropy(out, y).backward()
        torch.testing.assert_close(logits[i].detach(), out.detach(), rtol=0, atol=1e-5)
        wide_grads = {k: p.grad[i] for k, p in wide.named_parameters()}
        for k, p in net.named_parameters():  # rounding differences grow through the 31 BN layers backwards: by norm
            rel = float((wide_grads[k] - p.grad).norm() / p.grad.norm())
            assert rel < (1e-5 if k.startswith("head.") else 5e-2), (k, rel)
        # BN running statistics of the training-mode pass, per network
        ws, ns = wide.network_state(i), net.state_dict()
        for k in ns:
            if "running" in k:
                torch.testing.assert_close(ws[k], ns[k], rtol=1e-5, atol=1e-6)
