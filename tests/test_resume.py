"""Kill / resume: a run SIGKILLed at a random point of stage 1 or stage 2, or at any durable write, resumes from
its last checkpoint when the same command runs again and ends with exactly the metrics of an uninterrupted run.

Kill points are drawn from a seeded RNG; the seed is printed and set with LTBENCH_KILL_SEED to replay a failure.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ltbench.audit import check_all, check_run
from ltbench.registry import method_names
from ltbench.store import iter_run_dirs
from reliability_util import (REPO, env_with_cache, outcome, run_args, run_bench, run_folder, write_preset)

KILL_SEED = int(os.environ.get("LTBENCH_KILL_SEED", random.SystemRandom().randrange(2**31)))
E1, E2 = 4, 3  # stage-1 / stage-2 epochs of the kill tests


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
    # 0 only when the run finished (its folder renamed into place) before the signal landed
    assert proc.returncode in (-signal.SIGKILL, 0), (proc.returncode, lines)
    return lines


def assert_atomic(results: Path) -> None:
    """After a kill: either no run folder, or a complete sound one (the kill landed after the rename), and no
    metrics.json / predictions.npz anywhere else a reader could see it."""
    runs = list(iter_run_dirs(results))
    assert all(check_run(d) == [] for d in runs), {d: check_run(d) for d in runs}
    root = results / "runs"
    visible = [p for p in root.rglob("*") if p.name in ("metrics.json", "predictions.npz")
               and not any(part.startswith(".") for part in p.relative_to(root).parts)] if root.exists() else []
    assert all(p.parent in runs for p in visible), visible


def assert_nothing_visible(results: Path) -> None:
    """After a kill that certainly came before the run-folder rename: no run folder, no result file visible."""
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
    get.base = base
    return get


@pytest.mark.parametrize("method", ["crt", "srepr", pytest.param("lws", marks=pytest.mark.slow),
                                    pytest.param("swag", marks=pytest.mark.slow)])
def test_kill_in_stage1_then_in_stage2_resumes_to_identical_metrics(tmp_path, reference, method):
    if method not in method_names():
        pytest.skip(f"method {method!r} is not registered on this branch (methods: {', '.join(method_names())})")
    rng = _rng(method)
    k1, k2 = rng.randint(1, E1), rng.randint(1, E2)
    d1, d2 = rng.uniform(0, 0.4), rng.uniform(0, 0.1)
    print(f"{method}: kill 1 at stage 1 epoch {k1}/{E1} + {d1:.2f}s, kill 2 at stage 2 epoch {k2}/{E2} + {d2:.2f}s")
    want = reference(method)
    args = run_args(method, reference.preset, tmp_path / "results")
    cache = tmp_path / "cache"

    kill_at_line(args, cache, rf"^stage 1 \[\w+\] epoch {k1}/{E1}\b", d1)
    assert_nothing_visible(tmp_path / "results")
    # an epoch line is printed only after that epoch's checkpoint is durable, so after kill 1 there is one to resume
    lines = kill_at_line(args, cache, rf"^stage 2 \[\w+\] epoch {k2}/{E2}\b", d2)
    assert any(s.startswith("stage 1: resuming") or s.startswith("stage 1: reusing") for s in lines), lines
    assert_atomic(tmp_path / "results")  # a kill after the last epoch line may land after the rename

    r = run_bench(args, cache)
    assert r.returncode == 0, r.stderr
    assert "stage 1: reusing" in r.stderr or "skip:" in r.stderr, r.stderr
    assert re.search(r"stage 2: resuming \w+ from epoch \d", r.stderr) or f"epoch 1/{E2}" not in r.stderr, r.stderr
    d = run_folder(tmp_path / "results", method)
    assert check_run(d) == []
    assert outcome(d) == want, f"resumed {method} run differs from the uninterrupted one (kill seed {KILL_SEED})"
    assert all(not p for p in check_all(tmp_path / "results").values())


def test_printed_epoch_is_already_checkpointed(tmp_path, reference):
    """Killed the instant a stage-1 or stage-2 epoch line appears, that epoch's checkpoint is already on disk."""
    args = run_args("crt", reference.preset, tmp_path / "results")
    cache = tmp_path / "cache"
    kill_at_line(args, cache, rf"^stage 1 \[\w+\] epoch 1/{E1}\b", 0.0)
    [ck] = list((cache / "stage1").glob("*/ckpt.pt"))
    assert torch.load(ck, weights_only=False)["epoch"] >= 1
    kill_at_line(args, cache, rf"^stage 2 \[\w+\] epoch 1/{E2}\b", 0.0)
    [ck2] = list((cache / "stage2").rglob("*-ckpt.pt"))
    assert torch.load(ck2, weights_only=False)["epoch"] >= 1


def _child(func: str, n: int, args: list[str], cache: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "tests" / "kill_child.py"), func, str(n), "--", *args[2:]]
    return subprocess.run(cmd, cwd=REPO, env=env_with_cache(cache), capture_output=True, text=True, timeout=300)


# Durable writes (each preceded by an fsync) of a crt run: E1 stage-1 checkpoints, final.pt, E2 stage-2 checkpoints,
# then the 5 run-folder files (config, metrics, predictions, log, reliability plot). cRT's default stage 2 runs the
# frozen backbone on augmented images, so it caches no base features.
WRITE_POINTS = E1 + 1 + E2 + 5


def test_kill_at_durable_writes_and_run_folder_rename(tmp_path, reference):
    """One interrupted history: SIGKILL between writing final.pt and deleting ckpt.pt; then, in the rerun, just
    before a random fsync after stage 1 (a cache / checkpoint / run file half-written under its temporary name);
    then just before the run-folder rename. The last rerun completes with the uninterrupted metrics, no partial
    file is ever visible, and the dead writers' hidden leftovers are removed."""
    rng = _rng("writes")
    m = rng.randint(1, WRITE_POINTS - E1 - 1)
    kills = [("unlink:ckpt.pt", 1), ("fsync", m), ("rename", 1)]
    print("kill points:", kills)
    want = reference("crt")
    results, cache = tmp_path / "res", tmp_path / "cache"
    args = run_args("crt", reference.preset, results)
    for func, n in kills:
        r = _child(func, n, args, cache)
        assert r.returncode == -signal.SIGKILL and "kill_child: SIGKILL" in r.stderr, (func, n, r.stderr[-2000:])
        assert_nothing_visible(results)
        leftovers = [p for p, probs in check_all(results).items() if probs]
        if func == "rename" or (func == "fsync" and n > WRITE_POINTS - E1 - 1 - 5):
            assert leftovers and all(".tmp-" in p.name for p in leftovers), leftovers  # killed inside write_run
    r = run_bench(args, cache)
    assert r.returncode == 0, r.stderr
    assert "stage 1: reusing" in r.stderr and "extracting" not in r.stderr, r.stderr  # nothing was redone
    assert outcome(run_folder(results, "crt")) == want, f"kill points {kills}: metrics differ (seed {KILL_SEED})"
    assert {p: probs for p, probs in check_all(results).items() if probs} == {}  # the dead pid's leftover is gone
    s1 = next((cache / "stage1").iterdir())
    assert not (s1 / "ckpt.pt").exists() and not list(s1.glob(".*.tmp")), sorted(os.listdir(s1))


@pytest.mark.slow
def test_kill_at_every_durable_write(tmp_path, reference):
    """The exhaustive version: a fresh run killed before each of its fsyncs in turn, then resumed."""
    want = reference("crt")
    for n in range(1, WRITE_POINTS + 1):
        results, cache = tmp_path / f"res{n}", tmp_path / f"cache{n}"
        args = run_args("crt", reference.preset, results)
        r = _child("fsync", n, args, cache)
        assert r.returncode == -signal.SIGKILL, (n, r.stderr[-2000:])
        assert_nothing_visible(results)
        r = run_bench(args, cache)
        assert r.returncode == 0, (n, r.stderr)
        assert outcome(run_folder(results, "crt")) == want, f"kill before fsync {n}: metrics differ"
        assert {p: probs for p, probs in check_all(results).items() if probs} == {}


def test_kill_between_force_renames_keeps_a_recoverable_run(tmp_path, reference):
    """--force replaces a run with two renames; a kill between them leaves no half-state a reader can see and the
    rerun writes the run again."""
    want = reference("crt")
    results = tmp_path / "res"
    shutil.copytree(run_folder(reference.base / "results", "crt"), run_folder(results, "crt"))
    args = run_args("crt", reference.preset, results)
    r = _child("rename", 2, args + ["--force"], reference.base / "cache")  # 1: old run -> hidden; 2: new -> place
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert_nothing_visible(results)
    assert any(".old-" in p.name for p in check_all(results))
    r = run_bench(args, reference.base / "cache")
    assert r.returncode == 0, r.stderr
    assert outcome(run_folder(results, "crt")) == want
    assert all(not p for p in check_all(results).values())
