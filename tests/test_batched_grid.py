"""``bench.py grid --batched``: the stage-1 networks of one dataset train as one stacked network, then every run
of their groups reuses them from the cache; the projection calibrates the stacked network."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from ltbench.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent


def test_tiny_grid_batched(tmp_path):
    cmd = [sys.executable, str(REPO / "bench.py"), "grid", "--dataset", "cifar10-lt-tiny", "--seed", "0",
           "--method", "ce", "--epochs", "2", "--stage2-epochs", "1", "--results", str(tmp_path / "res"),
           "--device", "cpu", "--calibration-steps", "1", "--batched"]
    env = dict(os.environ, LTBENCH_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    err = res.stderr
    assert "calibration: 2 stacked resnet32" in err and "projected wall time:" in err
    assert "stage 1 batched: 2 networks of cifar10-lt-tiny (sgd/seed0 swa/seed0)" in err
    assert "[2/2]" in err and "FAILED" not in err
    folders = sorted((tmp_path / "res" / "runs" / "cifar10-lt-tiny").glob("*/seed0/config.json"))
    assert [f.parent.parent.name for f in folders] == ["sgd-ce", "swa-ce"]
    for f in folders:
        cfg = json.loads(f.read_text())
        final = load_checkpoint(Path(cfg["stage1_cache"]) / "final.pt")
        assert [r["batched"] for r in final["log"]] == [2, 2]  # trained in the stack, then reused by the run
        assert final["config"]["stage1_mode"] == cfg["stage1_mode"]
        assert (final["swag"] is not None) == (cfg["stage1_mode"] == "swa")
        assert all(torch.isfinite(v.float()).all() for v in final["network"].values())
