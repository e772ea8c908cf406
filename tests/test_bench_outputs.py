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


def _tiny_bench_data():
    import torch

    from ltbench.data.base import TensorLTData

    g = torch.Generator().manual_seed(0)
    return TensorLTData("bench-tiny", 4, torch.randint(0, 256, (256, 3, 8, 8), dtype=torch.uint8, generator=g),
                        torch.arange(256) % 4, torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8, generator=g),
                        torch.arange(64) % 4, torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25]), 1)


def _import_throughput_benchmark(monkeypatch):
    """benchmarks/test_throughput.py under a private module name, imported beside benchmarks/conftest.py (whose
    module name tests/ also uses); sys.path and the benchmark's helper modules are put back afterwards."""
    import importlib.util

    monkeypatch.setattr(sys, "path", list(sys.path))  # benchmarks/conftest.py inserts its folders at import
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location("_bench_conftest", REPO / "benchmarks" / "conftest.py")
    bench_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_conftest)
    monkeypatch.setitem(sys.modules, "conftest", bench_conftest)  # what test_throughput imports META from
    spec = importlib.util.spec_from_file_location("_bench_throughput", REPO / "benchmarks" / "test_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for name in ("reference", "common"):  # the benchmark's own helpers, if this import brought them in
        if name not in before:
            monkeypatch.delitem(sys.modules, name, raising=False)
    return bench


def test_throughput_benchmark_trains_under_the_resolved_precision(monkeypatch):
    """Our side of the stage-1 benchmark trains in the precision a real run resolves ``auto`` to: bf16 autocast only
    where ``resolve_precision("auto", ...)`` says so. From 2026-11-28 (when ``autocast_for`` began to autocast on
    CPU) it autocast bf16 on every CPU, which oneDNN emulates without avx512_bf16, several times slower than the
    fp32 a run uses there, so the ratio described no real run."""
    import torch

    bench = _import_throughput_benchmark(monkeypatch)
    seen: list = []
    asked: list = []
    real = bench.autocast_for

    def spy(dev, precision):
        seen.append(precision)
        return real(dev, precision)

    monkeypatch.setattr(bench, "autocast_for", spy)
    monkeypatch.setattr(bench, "use_compile", lambda: False)
    with torch.random.fork_rng():  # _net seeds the global generator
        for resolved in ("fp32", "bf16"):
            def fake_resolve(req, dev, r=resolved):
                asked.append(req)
                return r
            monkeypatch.setattr(bench, "resolve_precision", fake_resolve)
            seen.clear()
            bench._stage1_fn(_tiny_bench_data(), torch.device("cpu"), 2, "ours")()
            assert seen == [resolved, resolved]
    assert set(asked) == {"auto"}
