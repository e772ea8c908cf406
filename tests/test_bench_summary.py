"""The benchmark summary: written outside the repository's tracked files unless asked, and one headline speed-up
(the paired one) with the unpaired ratio labelled as a check."""
from __future__ import annotations

import importlib.util
import statistics
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench_conftest():
    spec = importlib.util.spec_from_file_location("ltbench_bench_conftest", REPO / "benchmarks" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_default_output_is_git_ignored(bench_conftest):
    p = bench_conftest.ratio_path("cpu", env={}, today="2026-11-28")
    assert p == REPO / "outputs" / "benchmarks" / "cpu-2026-11-28.json"
    rel = p.relative_to(REPO).as_posix()
    ignored = subprocess.run(["git", "check-ignore", "-q", rel], cwd=REPO).returncode == 0
    assert ignored, f"{rel} is not git-ignored"
    assert bench_conftest.ratio_path("cpu", record=True, env={}, today="2026-11-28") == \
        REPO / "benchmarks" / "results" / "cpu-2026-11-28.json"
    assert bench_conftest.ratio_path("cuda", record=True, env={"LTBENCH_BENCH_OUT": "/tmp/x.json"}) == \
        Path("/tmp/x.json")


def test_headline_is_the_paired_speedup(bench_conftest):
    # the loaded-machine case of issue 17: per-round times where one busy stretch swings the unpaired ratio
    # (the machine got busy from round 2 on; each side's median comes from a different round)
    ours = [1.0, 3.0, 3.2]
    ref = [1.2, 1.3, 3.9]
    paired = statistics.median(r / o for o, r in zip(ours, ref))
    unpaired = statistics.median(ref) / statistics.median(ours)  # rate ratio of the two medians
    row = {"metric": "eval", "unit": "img/s", "ours": 256 / statistics.median(ours),
           "reference": 256 / statistics.median(ref), "ratio": unpaired, "paired_ratio_median": paired,
           "paired_ratios": [r / o for o, r in zip(ours, ref)]}
    assert bench_conftest.headline(row) == pytest.approx(paired)
    lines = bench_conftest.summary_lines({"rows": [row]})
    assert "speed-up" in lines[0] and "of medians" in lines[0]
    cells = lines[1].split()
    assert cells[0] == "eval" and cells[1] == f"{paired:.2f}x" and cells[-1] == f"{unpaired:.2f}x"
    assert cells[2] == f"{min(row['paired_ratios']):.2f}-{max(row['paired_ratios']):.2f}"
    assert any("number to quote" in line for line in lines)
    assert abs(unpaired / paired - 1) > 0.2 and any(line.startswith("note: for eval") for line in lines)
    calm = dict(row, ratio=paired * 1.05)
    assert not any(line.startswith("note:") for line in bench_conftest.summary_lines({"rows": [calm]}))
