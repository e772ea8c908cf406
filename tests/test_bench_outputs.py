"""Benchmarks write their JSON into the git-ignored outputs/benchmarks/ (issue 17: the JPEG benchmark left untracked
files in benchmarks/results/), the committed benchmarks/results/ only on request, wherever pytest is started."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def test_result_path_default_is_git_ignored(monkeypatch, tmp_path):
    from common import result_path

    monkeypatch.chdir(tmp_path)  # the working directory does not matter
    p = result_path("jpeg-cpu-2026-01-01.json", env={})
    assert p == REPO / "outputs" / "benchmarks" / "jpeg-cpu-2026-01-01.json"
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(p)])
    assert ignored.returncode == 0, f"{p} is not git-ignored"
    assert result_path("x.json", record=True, env={}) == REPO / "benchmarks" / "results" / "x.json"
    assert result_path("x.json", env={"LTBENCH_BENCH_OUT": "/tmp/y.json"}) == Path("/tmp/y.json")


def test_bench_jpeg_writes_under_outputs(monkeypatch, tmp_path):
    """bench_jpeg's JSON lands in outputs/benchmarks/ of the repository, wherever pytest was started (it used to
    write benchmarks/results/jpeg-<device>.json relative to the working directory: an untracked file in git)."""
    import datetime
    from types import SimpleNamespace

    import bench_jpeg

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LTBENCH_BENCH_OUT", raising=False)
    monkeypatch.setattr(bench_jpeg, "RESULTS", {"device": "test fake device", "images": 4})
    fake = SimpleNamespace(stats=SimpleNamespace(stats=SimpleNamespace(min=2.0)))
    want = REPO / "outputs" / "benchmarks" / f"jpeg-test_fake_device-{datetime.date.today().isoformat()}.json"
    try:
        bench_jpeg._record("ours_pipeline", fake, 4, record=False)
        assert want.is_file() and '"ours_pipeline": 2.0' in want.read_text()
        assert not list(tmp_path.rglob("*.json"))  # nothing relative to the working directory
    finally:
        want.unlink(missing_ok=True)
