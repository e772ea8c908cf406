"""``bench.py grid``: the plan enumerates the protocol grid, groups runs by stage-1 artifact, skips finished runs,
and a tiny grid runs end to end and resumes (a second invocation runs nothing)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ltbench.grid import build_plan, fmt_s, method_grid, split_groups, Group
from ltbench.registry import get_method, method_names

REPO = Path(__file__).resolve().parent.parent


def _expected_methods() -> int:
    sgd = [m for m in method_names() if not get_method(m).requires_swag]
    return len(sgd) + len(method_names())  # sgd: non-SWAG methods; swa: every method


def test_method_grid_matches_registry():
    pairs = method_grid()
    assert len(pairs) == _expected_methods()
    assert ("srepr", "swa") in pairs and ("srepr", "sgd") not in pairs and ("ce", "sgd") in pairs
    # with the current registry: 6 methods on the SGD extractor (ce, crt, lws, tau_norm, tau_norm_oracle,
    # logit_adjust), 8 on the SWA extractor (those + swag, srepr)
    assert sum(1 for _, s in pairs if s == "sgd") == 6 and sum(1 for _, s in pairs if s == "swa") == 8


def test_plan_enumerates_the_full_protocol_grid(tmp_path):
    groups = build_plan(["cifar10-lt", "cifar100-lt"], [10, 50, 100], [0, 1, 2], results=str(tmp_path))
    runs = [r for g in groups for r in g.runs]
    assert len(runs) == 2 * 3 * 3 * _expected_methods() == 252
    assert len({r.out for r in runs}) == len(runs)
    # one group per (dataset, IF, seed, extractor): stage 1 trains 36 times, not 180
    assert len(groups) == 2 * 3 * 3 * 2
    for g in groups:
        keys = {r.cfg.stage1_key() for r in g.runs}
        assert len(keys) == 1 and len({r.cfg.stage1_mode for r in g.runs}) == 1
    assert all(not r.done for r in runs)
    assert all(r.cfg.stage1.epochs == 200 and not r.cfg.reduced for r in runs)


def test_plan_skips_complete_runs_and_checks_imbalance(tmp_path):
    groups = build_plan(["cifar10-lt"], [100], [0], results=str(tmp_path))
    first = groups[0].runs[0]
    first.out.mkdir(parents=True)
    for f in ("metrics.json", "predictions.npz"):
        (first.out / f).write_text("{}")
    # a finished run is recognised by its config (not by its files being there): this one is the planned run's
    (first.out / "config.json").write_text(json.dumps(first.cfg.to_dict(), default=str))
    again = build_plan(["cifar10-lt"], [100], [0], results=str(tmp_path))
    done = [r for g in again for r in g.runs if r.done]
    assert [r.out for r in done] == [first.out]
    assert sum(len(g.pending) for g in again) == _expected_methods() - 1
    from ltbench.errors import LtbenchError
    with pytest.raises(LtbenchError, match="unsupported imbalance"):
        build_plan(["cifar10-lt"], [7], [0], results=str(tmp_path))


def test_split_groups_balances_and_keeps_groups_whole():
    gs = [Group((i,)) for i in range(5)]
    cost = {(0,): 10.0, (1,): 9.0, (2,): 5.0, (3,): 4.0, (4,): 1.0}
    bins = split_groups(gs, 2, lambda g: cost[g.key])
    assert sorted(len(b) for b in bins) == [2, 3]
    loads = sorted(sum(cost[g.key] for g in b) for b in bins)
    assert loads == [14.0, 15.0]
    assert fmt_s(3725) == "1h02m05s" and fmt_s(65) == "1m05s"


def _tiny_grid(tmp_path, methods: list[str] | None, n: int, jobs: int = 1):
    cmd = [sys.executable, str(REPO / "bench.py"), "grid", "--datasets", "cifar10-lt-tiny", "--seeds", "0",
           "--epochs", "2", "--stage2-epochs", "1", "--results", str(tmp_path / "res"), "--device", "cpu",
           "--calibration-steps", "2", "--jobs", str(jobs)]
    if methods:
        cmd += ["--methods", ",".join(methods)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"grid: {n} runs in 2 stage-1 groups; 0 already complete" in res.stderr
    assert "projected wall time:" in res.stderr and "calibration resnet32" in res.stderr
    assert f"[{n}/{n}]" in res.stderr and "ETA" in res.stderr and "FAILED" not in res.stderr
    folders = sorted((tmp_path / "res" / "runs" / "cifar10-lt-tiny").glob("*/seed0/metrics.json"))
    assert len(folders) == n
    cfg = json.loads((folders[0].parent / "config.json").read_text())
    assert cfg["stage1"]["epochs"] == 2 and cfg["reduced"] is True
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{n} already complete (skipped), 0 to run" in again.stderr
    assert "nothing to run" in again.stderr and "[1/" not in again.stderr


def test_tiny_grid_runs_end_to_end_and_resumes(tmp_path):
    """Both extractors with two cheap methods (2 + 1 epochs, 2 workers), then a second call skips everything."""
    _tiny_grid(tmp_path, ["ce", "crt"], 4, jobs=2)


@pytest.mark.slow
def test_tiny_grid_every_method(tmp_path):
    """The whole method grid (incl. the SWAG pool) on the tiny set; about 4 minutes on 2 busy cores."""
    _tiny_grid(tmp_path, None, _expected_methods())


def test_unknown_method_in_grid(tmp_path):
    from ltbench.errors import LtbenchError
    with pytest.raises(LtbenchError, match="unknown method"):
        build_plan(["cifar10-lt"], [100], [0], results=str(tmp_path), methods=["magic"])


def test_grid_rejects_bad_jobs(tmp_path):
    from bench import cli
    res = CliRunner().invoke(cli, ["grid", "--datasets", "cifar10-lt-tiny", "--jobs", "0", "--dry-run",
                                   "--results", str(tmp_path)])
    assert res.exit_code == 2 and "--jobs" in res.output
