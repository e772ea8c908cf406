"""Concurrent writers: two processes on one results folder never clobber each other, the stage-1 cache lock
makes the second wait and reuse the first's stage 1, and racing run-folder writes leave exactly one whole run."""
from __future__ import annotations

import multiprocessing as mp
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ltbench.audit import check_all, check_run
from ltbench.store import RunExistsError, write_run
from reliability_util import REPO, env_with_cache, outcome, run_args, run_folder, write_preset


def _start(args: list[str], cache: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=REPO, env=env_with_cache(cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), errs
    return errs


def test_same_run_twice_at_once(tmp_path):
    preset = write_preset(tmp_path / "p.toml", epochs=2, stage2_epochs=2)
    args = run_args("crt", preset, tmp_path / "res")
    errs = _finish([_start(args, tmp_path / "cache"), _start(args, tmp_path / "cache")])
    trained = [e for e in errs if "stage 1 [sgd] epoch 1/2" in e]
    assert len(trained) == 1, errs  # the lock: one process trained stage 1 ...
    other = errs[1 - errs.index(trained[0])]
    assert "stage 1: reusing" in other or "skip:" in other, other  # ... the other waited and reused it (or skipped)
    d = run_folder(tmp_path / "res", "crt")
    assert check_run(d) == []
    assert {p: v for p, v in check_all(tmp_path / "res").items() if v} == {}  # no leftovers, nothing else
    assert len(list((tmp_path / "cache" / "stage1").iterdir())) == 1


def test_two_different_runs_into_one_results_folder(tmp_path):
    preset = write_preset(tmp_path / "p.toml", epochs=2, stage2_epochs=2)
    res = tmp_path / "res"
    errs = _finish([_start(run_args(m, preset, res), tmp_path / "cache") for m in ("ce", "crt")])
    assert sum("stage 1 [sgd] epoch 1/2" in e for e in errs) == 1, errs  # shared stage 1 trained once
    report = check_all(res)
    assert sorted(p.parent.name for p in report) == ["sgd-ce", "sgd-crt"] and all(not v for v in report.values())
    # the shared stage-1 cache is sound: a third process reuses it and reproduces crt exactly
    r = subprocess.run(run_args("crt", preset, tmp_path / "res2"), cwd=REPO, env=env_with_cache(tmp_path / "cache"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "stage 1: reusing" in r.stderr, r.stderr
    assert outcome(run_folder(tmp_path / "res2", "crt")) == outcome(run_folder(res, "crt"))


@pytest.mark.slow  # two real processes (~20 s idle); the same race made deterministic: test_run_conflicts.py
def test_two_writers_of_one_folder_with_different_configs(tmp_path):
    """Started together, one run with a 1-epoch and one with a 2-epoch stage 1, into one results folder: the one that
    finishes second reports the conflict (exit 2), never the first one's numbers as its own (before: "skip", the
    first one's metrics printed, exit 0)."""
    import json
    preset = write_preset(tmp_path / "p.toml", epochs=2, stage2_epochs=1)
    res = tmp_path / "res"
    procs = [subprocess.Popen(run_args("ce", preset, res, extra=["--epochs", str(e)]), cwd=REPO,
                              env=env_with_cache(tmp_path / "cache"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for e in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], outs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    err = outs[loser][1]
    assert "error: " in err and "different config" in err and "stage1.epochs" in err and "skip" not in err, err
    assert outs[loser][0] == ""  # no results table (with the winner's numbers) on stdout
    cfg = json.loads((run_folder(res, "ce") / "config.json").read_text())
    assert cfg["stage1"]["epochs"] == winner + 1 and check_run(run_folder(res, "ce")) == []


def _racer(d: str, k: int, barrier, out) -> None:
    n = 400
    arrays = {"labels": np.arange(n) % 10, "pred": np.full(n, k % 10), "confidence": np.full(n, 0.5),
              "log_prob_true": np.full(n, -1.0), "sq_prob_sum": np.full(n, 0.3)}
    barrier.wait()
    try:
        write_run(Path(d), {"writer": k}, {"writer": k}, arrays, [{"writer": k}] * 1000, bytes([k]) * 200_000)
        out.put((k, "won"))
    except RunExistsError:
        out.put((k, "exists"))
    except Exception as e:  # noqa: BLE001
        out.put((k, f"{type(e).__name__}: {e}"))


@pytest.mark.parametrize("writers", [6])
def test_racing_write_run_leaves_one_whole_run(tmp_path, writers):
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(writers), ctx.Queue()
    d = tmp_path / "runs" / "x" / "sgd-ce" / "seed0"
    procs = [ctx.Process(target=_racer, args=(str(d), k, barrier, out)) for k in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = dict(out.get(timeout=5) for _ in procs)
    assert sorted(results.values()) == ["exists"] * (writers - 1) + ["won"], results
    winner = next(k for k, v in results.items() if v == "won")
    import json
    assert json.loads((d / "config.json").read_text()) == {"writer": winner}  # every file from the same writer
    assert json.loads((d / "metrics.json").read_text()) == {"writer": winner}
    assert (d / "reliability.png").read_bytes() == bytes([winner]) * 200_000
    with np.load(d / "predictions.npz") as z:
        assert (z["pred"] == winner % 10).all()
    assert sorted(p.name for p in d.parent.iterdir()) == ["seed0"]  # the losers' tmp folders are gone
