"""Kill / resume: a run SIGKILLed at a random point of stage 1 or stage 2, or at any durable write, resumes from
its last checkpoint when the same command runs again and ends with exactly the metrics of an uninterrupted run.

Kill points are drawn from a seeded RNG; the seed is printed and set with LTBENCH_KILL_SEED to replay a failure.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ltbench.audit import check_all, check_run
from ltbench.registry import method_names
from ltbench.store import iter_run_dirs
from reliability_util import (REPO, env_with_cache, outcome, run_args, run_bench, run_folder, write_preset)

KILL_SEED = int(os.environ.get("LTBENCH_KILL_SEED", random.SystemRandom().randrange(2**31)))
E1, E2 = 5, 4  # stage-1 / stage-2 epochs of the kill tests


def _rng(name: str) -> random.Random:
    print(f"kill seed {KILL_SEED} (replay with LTBENCH_KILL_SEED={KILL_SEED})")
    return random.Random(f"{KILL_SEED}-{name}")


def kill_at_line(args: list[str], cache: Path, pattern: str, delay: float, timeout: float = 300) -> list[str]:
    """Start ``args``, SIGKILL it ``delay`` s after the first stderr line matching ``pattern``; its stderr lines."""
    proc = subprocess.Popen(args, cwd=REPO, env=env_with_cache(cache), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    t0 = time.monotonic()
    try:
        for line in proc.stderr:
            lines.append(line.rstrip())
            if re.search(pattern, line):
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() - t0 < timeout, "timed out waiting for the kill line"
        else:
            pytest.fail(f"the run ended before {pattern!r} appeared:\n" + "\n".join(lines))
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, lines)
    return lines


def assert_nothing_visible(results: Path) -> None:
    """After a kill: no run folder, and no metrics.json / predictions.npz anywhere a reader could see it."""
    assert list(iter_run_dirs(results)) == []
    root = results / "runs"
    visible = [p for p in root.rglob("*") if p.name in ("metrics.json", "predictions.npz")
               and not any(part.startswith(".") for part in p.relative_to(root).parts)] if root.exists() else []
    assert visible == []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs, computed once per method, each with its own stage-1 cache."""
    base = tmp_path_factory.mktemp("reference")
    preset = write_preset(base / "kill.toml", epochs=E1, stage2_epochs=E2)
    done: dict[str, dict] = {}

    def get(method: str) -> dict:
        if method not in done:
            r = run_bench(run_args(method, preset, base / "results"), base / "cache")
            assert r.returncode == 0, r.stderr
            done[method] = outcome(run_folder(base / "results", method))
        return done[method]
    get.preset = preset
    return get


@pytest.mark.parametrize("method", ["crt", "srepr", pytest.param("lws", marks=pytest.mark.slow),
                                    pytest.param("swag", marks=pytest.mark.slow)])
def test_kill_in_stage1_then_in_stage2_resumes_to_identical_metrics(tmp_path, reference, method):
    if method not in method_names():
        pytest.skip(f"method {method!r} is not registered on this branch (methods: {', '.join(method_names())})")
    rng = _rng(method)
    k1, k2 = rng.randint(1, E1), rng.randint(1, E2)
    d1, d2 = rng.uniform(0, 0.4), rng.uniform(0, 0.2)
    print(f"{method}: kill 1 at stage 1 epoch {k1}/{E1} + {d1:.2f}s, kill 2 at stage 2 epoch {k2}/{E2} + {d2:.2f}s")
    want = reference(method)
    args = run_args(method, reference.preset, tmp_path / "results")
    cache = tmp_path / "cache"

    kill_at_line(args, cache, rf"^stage 1 \[\w+\] epoch {k1}/{E1}\b", d1)
    assert_nothing_visible(tmp_path / "results")
    lines = kill_at_line(args, cache, rf"^stage 2 \[\w+\] epoch {k2}/{E2}\b", d2)
    assert any(s.startswith("stage 1: resuming") or s.startswith("stage 1: reusing") for s in lines), lines
    assert_nothing_visible(tmp_path / "results")

    r = run_bench(args, cache)
    assert r.returncode == 0, r.stderr
    assert "stage 1: reusing" in r.stderr, r.stderr
    assert re.search(r"stage 2: resuming \w+ from epoch \d", r.stderr) or f"epoch 1/{E2}" not in r.stderr, r.stderr
    d = run_folder(tmp_path / "results", method)
    assert check_run(d) == []
    assert outcome(d) == want, f"resumed {method} run differs from the uninterrupted one (kill seed {KILL_SEED})"
    assert all(not p for p in check_all(tmp_path / "results").values())


def _child(func: str, n: int, args: list[str], cache: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "tests" / "kill_child.py"), func, str(n), "--", *args[2:]]
    return subprocess.run(cmd, cwd=REPO, env=env_with_cache(cache), capture_output=True, text=True, timeout=300)


# Durable writes of a crt run with E1 = 3, E2 = 2: 3 stage-1 checkpoints, final.pt, base features, 2 stage-2
# checkpoints, then the 5 run-folder files (config, metrics, predictions, log, reliability plot).
WRITE_POINTS = 3 + 1 + 1 + 2 + 5


@pytest.mark.parametrize("points", ["sample", pytest.param("all", marks=pytest.mark.slow)])
def test_kill_at_durable_writes_and_run_folder_rename(tmp_path, points):
    """SIGKILL just before an fsync (a checkpoint, cache file or run file half-written under its temporary name),
    just before the run-folder rename, and between final.pt and deleting ckpt.pt: the rerun completes with the
    uninterrupted metrics, no partial file is ever visible, and the killed writer's hidden folder is cleaned."""
    rng = _rng(f"writes-{points}")
    preset = write_preset(tmp_path / "w.toml", epochs=3, stage2_epochs=2)
    ref = run_bench(run_args("crt", preset, tmp_path / "ref"), tmp_path / "cache-ref")
    assert ref.returncode == 0, ref.stderr
    want = outcome(run_folder(tmp_path / "ref", "crt"))
    fsyncs = list(range(1, WRITE_POINTS + 1)) if points == "all" else sorted(rng.sample(range(1, WRITE_POINTS + 1), 2))
    kills = [("fsync", n) for n in fsyncs] + [("rename", 1), ("unlink:ckpt.pt", 1)]
    print("kill points:", kills)
    for func, n in kills:
        results, cache = tmp_path / f"res-{func}-{n}", tmp_path / f"cache-{func}-{n}"
        args = run_args("crt", preset, results)
        r = _child(func, n, args, cache)
        assert r.returncode == -signal.SIGKILL and "kill_child: SIGKILL" in r.stderr, (func, n, r.stderr[-2000:])
        assert_nothing_visible(results)
        leftovers = [p for p, probs in check_all(results).items() if probs]
        if func == "rename" or (func == "fsync" and n > WRITE_POINTS - 5):
            assert leftovers and all(".tmp-" in p.name for p in leftovers), leftovers  # killed inside write_run
        r = run_bench(args, cache)
        assert r.returncode == 0, (func, n, r.stderr)
        d = run_folder(results, "crt")
        assert outcome(d) == want, f"kill at {func} call {n}: resumed metrics differ (kill seed {KILL_SEED})"
        assert {p: probs for p, probs in check_all(results).items() if probs} == {}  # leftover of the dead pid gone
        s1 = next((cache / "stage1").iterdir())
        assert not (s1 / "ckpt.pt").exists() and not list(s1.glob(".*.tmp")), sorted(os.listdir(s1))


def test_kill_between_force_renames_keeps_a_recoverable_run(tmp_path):
    """--force replaces a run with two renames; a kill between them leaves no half-state a reader can see and the
    rerun writes the run again."""
    preset = write_preset(tmp_path / "f.toml", epochs=2, stage2_epochs=1)
    args = run_args("ce", preset, tmp_path / "res")
    cache = tmp_path / "cache"
    assert run_bench(args, cache).returncode == 0
    want = outcome(run_folder(tmp_path / "res", "ce"))
    r = _child("rename", 2, args + ["--force"], cache)  # call 1: old run -> hidden; call 2 (killed): new -> place
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert_nothing_visible(tmp_path / "res")
    assert any(".old-" in p.name for p in check_all(tmp_path / "res"))
    r = run_bench(args, cache)
    assert r.returncode == 0, r.stderr
    assert outcome(run_folder(tmp_path / "res", "ce")) == want
    assert all(not p for p in check_all(tmp_path / "res").values())
