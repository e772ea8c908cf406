"""Live progress of the feature-extraction and SWAG-pool passes (issue 17): plain lines when stderr is not a
terminal (pytest captures it), one closing line per pass, nothing when the run's echo is quiet. No timed checks."""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import torch

from ltbench.models.factory import Network
from ltbench.registry import get_dataset
from ltbench.train.features import base_features, swag_pool_features
from ltbench.train.swag import Swag

N_TRAIN, N_TEST = 25, 16


def _ctx(tmp_path, quiet: bool = False):
    full = get_dataset("cifar10-lt-tiny").load()
    data = full.subset_train(np.arange(0, 199, 8)).with_test(full.test_x[:N_TEST], full.test_y[:N_TEST])
    assert len(data.train_labels) == N_TRAIN
    torch.manual_seed(0)
    # a tiny extractor with BN (what the passes are about), so the test costs milliseconds, not ResNet-32 passes
    ext = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    net = Network(ext, 4, data.num_classes).eval()
    swag = Swag.for_network(net, rank=2)
    base = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        swag.collect_vector(base + 0.01 * torch.randn(base.shape, generator=g))
    echo = lambda s: None  # noqa: E731
    if quiet:
        echo.quiet = True
    cfg = SimpleNamespace(eval_batch_size=8, seed=0, stage1=SimpleNamespace(batch_size=8))
    return SimpleNamespace(stage1=SimpleNamespace(network=net, swag=swag, dir=tmp_path / "s1"), data=data,
                           device=torch.device("cpu"), cfg=cfg, echo=echo)


DONE = r"(?P<desc>.+): done, (?P<n>[\d,]+) img in \S+(, [\d,.]+ img/s)?"


def _done_lines(err: str) -> list[tuple[str, int]]:
    """(description, image count) of every closing line; every line is a progress line."""
    lines = err.splitlines()
    assert "\r" not in err and "\x1b" not in err  # not a terminal: plain lines, no bar
    out = []
    for line in lines:
        m = re.fullmatch(DONE, line)
        if m:
            out.append((m["desc"], int(m["n"].replace(",", ""))))
        else:  # an intermediate line: '<desc>: k/N img (p%), r img/s, elapsed t, ETA e'
            assert re.fullmatch(r".+: [\d,]+/[\d,]+ img \(\d+%\), [\d,.]+ img/s, elapsed \S+, ETA \S+", line), line
    return out


def test_base_feature_passes_show_progress(tmp_path, capsys):
    ctx = _ctx(tmp_path)
    base_features(ctx, "train")
    base_features(ctx, "test")
    assert _done_lines(capsys.readouterr().err) == [("stage 2: train features", N_TRAIN),
                                                    ("stage 2: test features", N_TEST)]
    base_features(ctx, "train")  # cached: no pass, no progress
    assert capsys.readouterr().err == ""


def test_swag_pool_passes_show_progress(tmp_path, capsys):
    ctx = _ctx(tmp_path)
    swag_pool_features(ctx, 2, 0.5, False, "recompute")
    assert _done_lines(capsys.readouterr().err) == [
        ("stage 2: SWAG sample 1/2 BN pass", N_TRAIN), ("stage 2: SWAG sample 2/2 BN pass", N_TRAIN),
        ("stage 2: SWAG sample 1/2 train features", N_TRAIN), ("stage 2: SWAG sample 2/2 train features", N_TRAIN)]
    swag_pool_features(ctx, 2, 0.5, False, "recompute", one_pass=True, split="test")
    assert _done_lines(capsys.readouterr().err) == [
        ("stage 2: BN pass of 2 SWAG samples", N_TRAIN), ("stage 2: test features, base + 2 SWAG samples", N_TEST)]


def test_intermediate_lines_each_tenth(tmp_path, capsys):
    """25 images in batches of 8: the plain lines come at the tenths the batches cross, then the closing line."""
    ctx = _ctx(tmp_path)
    base_features(ctx, "train")
    lines = capsys.readouterr().err.splitlines()
    counts = [int(re.match(r"stage 2: train features: (\d+)/25 img", line)[1]) for line in lines[:-1]]
    assert counts == [8, 16, 24]  # 8/25 = 32 % crosses 10-30 %, 16 crosses 40-60 %, 24 crosses 70-90 %
    assert lines[-1].startswith("stage 2: train features: done, 25 img in ")


def test_quiet_echo_silences_progress(tmp_path, capsys):
    ctx = _ctx(tmp_path, quiet=True)
    base_features(ctx, "train")
    swag_pool_features(ctx, 2, 0.5, False, "recompute", one_pass=True)
    assert capsys.readouterr().err == ""


def test_the_swag_pool_tells_the_grids_heartbeat_how_far_it_is(tmp_path):
    """While the pool is drawn (BN passes) and its features extracted, ACTIVITY (what the grid's status line reads)
    counts the samples done, and is cleared afterwards: the line no longer stands still for the pool's minutes."""
    from ltbench.progress import ACTIVITY

    ctx = _ctx(tmp_path)
    seen: list[tuple[str, str | None]] = []
    ctx.echo = lambda s: seen.append((s, ACTIVITY.text()))
    swag_pool_features(ctx, 3, 0.5, False, "recompute")
    acts = [a for line, a in seen if line.startswith("stage 2: SWAG sample ")]
    assert [a.split(", ~")[0] for a in acts] == [
        "SWAG pool: BN passes 0/3 samples done", "SWAG pool: BN passes 1/3 samples done",
        "SWAG pool: BN passes 2/3 samples done",
        "SWAG pool: train features 0/3 samples done", "SWAG pool: train features 1/3 samples done",
        "SWAG pool: train features 2/3 samples done"]
    assert acts[1].endswith(" to go") and ACTIVITY.text() is None
