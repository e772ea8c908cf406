"""Determinism: the same seed on the same device with --deterministic gives identical metrics and predictions
(each run with its own empty stage-1 cache, so nothing is shared); a different seed gives different ones."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import bench
from reliability_util import outcome, write_preset


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU results depend on the thread count; keep it fixed (and fast)
    yield
    torch.set_num_threads(n)


def _run(tmp_path, monkeypatch, name: str, seed: int, method: str = "crt"):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / f"cache-{name}"))
    preset = write_preset(tmp_path / "p.toml", epochs=2, stage2_epochs=2)
    results = tmp_path / f"res-{name}"
    r = CliRunner().invoke(bench.cli, ["run", "--method", method, "--dataset", "cifar10-lt-tiny", "--seed", str(seed),
                                       "--preset", str(preset), "--results", str(results), "--device", "cpu",
                                       "--deterministic", "--quiet"])
    assert r.exit_code == 0, (r.output, r.exception)
    d = results / "runs" / "cifar10-lt-tiny" / f"sgd-{method}" / f"seed{seed}"
    assert json.loads((d / "config.json").read_text())["deterministic"] is True
    return outcome(d)


def test_same_seed_identical_different_seed_differs(tmp_path, monkeypatch):
    a = _run(tmp_path, monkeypatch, "a", 0)
    b = _run(tmp_path, monkeypatch, "b", 0)
    assert a == b  # metrics, every prediction array byte, and the training log (minus timings)
    c = _run(tmp_path, monkeypatch, "c", 1)
    assert c["metrics"] != a["metrics"] and c["arrays"] != a["arrays"]
    assert [r["loss"] for r in c["log"]] != [r["loss"] for r in a["log"]]
