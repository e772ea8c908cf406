"""Cost columns of the results tables: stage-1 / stage-2 wall time (mean over seeds) and device per setting,
checked against an independent pandas computation over the run folders' config.json files."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from ltbench.report.tables import aggregate, collect_runs, duration, render
from report_fixtures import make_run

TIMES = {  # (stage1, method, seed) -> (stage-1 s, stage-2 s, device name)
    ("sgd", "ce", 0): (1000.0, 0.01, "NVIDIA H200"), ("sgd", "ce", 1): (1100.0, 0.03, "NVIDIA H200"),
    ("sgd", "crt", 0): (1000.0, 30.0, "NVIDIA H200"), ("sgd", "crt", 1): (1100.0, 34.0, "AMD EPYC"),
    ("swa", "srepr", 0): (7300.0, 400.0, "cpu"),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for (s1, m, seed), (t1, t2, dev) in TIMES.items():
        d, _ = make_run(root, m, s1, seed, 0.5)
        c = json.loads((d / "config.json").read_text())
        c.update(stage1_train_time_s=t1, stage2_time_s=t2, environment={"device": "x", "device_name": dev})
        (d / "config.json").write_text(json.dumps(c))
    return root


def _expected(results: Path) -> pd.DataFrame:
    """Straight from the config.json files with pandas: mean times and the set of devices per setting."""
    rows = [json.loads(p.read_text()) for p in sorted((results / "runs").rglob("config.json"))]
    df = pd.json_normalize(rows)
    g = df.groupby(["stage1_mode", "method"])
    return pd.DataFrame({"s1": g["stage1_train_time_s"].mean(), "s2": g["stage2_time_s"].mean(),
                         "dev": g["environment.device_name"].agg(lambda v: " / ".join(sorted(set(v))))})


def test_csv_cost_columns_match_pandas(results):
    agg = aggregate(collect_runs(results).runs)
    got = pd.read_csv(io.StringIO(render(agg, "csv", cost=True))).set_index(["stage1_mode", "method"])
    want = _expected(results)
    for key in want.index:
        assert got.loc[key, "stage1_train_time_s_mean"] == pytest.approx(want.loc[key, "s1"], rel=1e-5)
        assert got.loc[key, "stage2_time_s_mean"] == pytest.approx(want.loc[key, "s2"], rel=1e-5)
        assert got.loc[key, "device_name"] == want.loc[key, "dev"]
    assert got.loc[("sgd", "crt"), "device_name"] == "AMD EPYC / NVIDIA H200"  # mixed hardware is shown, not hidden
    # without the option the CSV is as before: no cost columns
    assert "stage1_train_time_s_mean" not in render(agg, "csv")


def test_markdown_and_latex_cost_columns(results):
    agg = aggregate(collect_runs(results).runs)
    md = render(agg, "markdown", cost=True)
    head, rule, *rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    cols = [c.strip() for c in head.strip("|").split("|")]
    assert cols[-3:] == ["cifar10-lt-if100 stage-1 time", "cifar10-lt-if100 stage-2 time", "cifar10-lt-if100 device"]
    want = _expected(results)
    by_name = {("SGD", "CE"): ("sgd", "ce"), ("SGD", "cRT"): ("sgd", "crt"), ("SWA", "SRepr"): ("swa", "srepr")}
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert len(cells) == len(cols)
        key = by_name[(cells[0], cells[1])]
        assert cells[-3:] == [duration(want.loc[key, "s1"]), duration(want.loc[key, "s2"]), want.loc[key, "dev"]]
    assert "stage-1 time" not in render(agg, "markdown")
    tex = render(agg, "latex", cost=True)
    assert "S1 time & S2 time & device" in tex and "17.5 min & 32 s & AMD EPYC / NVIDIA H200" in tex


def test_duration_cells():
    assert [duration(x) for x in (0.01, 0.4, 42.4, 1050.0, 7300.0, 40000.0)] == \
        ["<0.1 s", "0.4 s", "42 s", "17.5 min", "121.7 min", "11.1 h"]
    assert duration(float("nan")) == ""
