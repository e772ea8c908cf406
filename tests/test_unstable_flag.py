"""An unstable stage 2 is marked in every report (issue 15 item 4): the Markdown / LaTeX / CSV tables, the
leaderboard, the site, the paired statistics, `compare` and the table printed after `bench.py run`.

Run folders are built with and without the flag: one seed of a 3-seed setting records ``unstable`` in config.json
(a stage-2 loss that grows past the stated bound, consistent with its log so the audit passes), and one run
recorded before the flag existed has the same rising log but no key (its flag must be recomputed). A store with no
unstable run must show no marker at all.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from ltbench.audit import LOSS_RISE_BOUND, NLL_BOUND, check_run
from report_fixtures import make_run

MARK = "‡"


def _rising_log(first: float, last: float, epochs: int = 10) -> list[dict]:
    """Stage-2 log rows (epochs 1..epochs, as config.json's stage2.epochs says) whose loss goes first -> last."""
    step = (last - first) / (epochs - 1)
    return [{"stage": 2, "epoch": e, "loss": first + step * (e - 1)} for e in range(1, epochs + 1)]


def _set_unstable(d: Path, record_flag: bool) -> None:
    """Give run folder ``d`` a stage-2 loss rising 1.0 -> 2.5 (past the 2x bound); record the flag or not."""
    rows = _rising_log(1.0, 2.5)
    (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = json.loads((d / "config.json").read_text())
    if record_flag:  # what the runner writes: the reason, as text (worded independently of the code here)
        cfg["unstable"] = [f"stage-2 loss rose from 1 (first epoch) to 2.5 (last epoch), more than "
                           f"{LOSS_RISE_BOUND:g}x"]
    (d / "config.json").write_text(json.dumps(cfg))


def _stable_log(d: Path, record_flag: bool = True) -> None:
    (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rising_log(2.0, 1.0)))
    if record_flag:
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps(dict(cfg, unstable=[])))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("unstable")
    for s in range(3):
        d, _ = make_run(root, "ce", "sgd", s, 0.45)
        _set_unstable(d, True) if s == 1 else _stable_log(d)
        d, _ = make_run(root, "crt", "sgd", s, 0.62)
        _stable_log(d)
    d, _ = make_run(root, "crt", "swa", 0, 0.55)
    _set_unstable(d, False)  # recorded before the flag existed: no 'unstable' key, same rising log
    d, _ = make_run(root, "lws", "sgd", 0, 0.4, dataset="cifar100-lt", imbalance=50)
    _stable_log(d, record_flag=False)
    return root


@pytest.fixture(scope="module")
def stable_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stable")
    for s in range(2):
        for m, acc in (("ce", 0.45), ("crt", 0.6)):
            d, _ = make_run(root, m, "sgd", s, acc)
            _stable_log(d)
    return root


def _dir(root: Path, setting: str, seed: int, tag: str = "cifar10-lt-if100") -> Path:
    return root / "runs" / tag / setting / f"seed{seed}"


def test_fixture_runs_pass_the_audit(store):
    """The flag in config.json agrees with the log (else the audit would keep the run out of every table)."""
    for d in sorted(store.glob("runs/*/*/seed*")):
        assert check_run(d) == [], d
    bad = json.loads((_dir(store, "sgd-ce", 1) / "config.json").read_text())
    bad["unstable"] = []  # the flag removed by hand: the audit must catch it, so no table can drop the marker
    d = _dir(store, "sgd-ce", 1)
    orig = (d / "config.json").read_text()
    try:
        (d / "config.json").write_text(json.dumps(bad))
        assert any("unstable" in p for p in check_run(d))
    finally:
        (d / "config.json").write_text(orig)


def test_collect_and_aggregate(store):
    from ltbench.report.tables import aggregate, collect_runs

    col = collect_runs(store)
    assert col.excluded == []
    runs = col.runs.set_index(["stage1_mode", "method", "seed"])
    assert bool(runs.loc[("sgd", "ce", 1), "unstable"]) and not runs.loc[("sgd", "ce", 0), "unstable"]
    assert bool(runs.loc[("swa", "crt", 0), "unstable"])  # recomputed for a run without the key
    assert "more than 2x" in runs.loc[("swa", "crt", 0), "unstable_why"]
    agg = aggregate(col.runs).set_index(["dataset_tag", "stage1_mode", "method"])
    # a mean over seeds is marked when any seed is unstable
    assert bool(agg.loc[("cifar10-lt-if100", "sgd", "ce"), "unstable"])
    assert agg.loc[("cifar10-lt-if100", "sgd", "ce"), "unstable_seeds"] == "1"
    assert agg.loc[("cifar10-lt-if100", "swa", "crt"), "unstable_seeds"] == "0"
    assert not agg.loc[("cifar10-lt-if100", "sgd", "crt"), "unstable"]
    assert not agg.loc[("cifar100-lt-if50", "sgd", "lws"), "unstable"]


def _md_cells(md: str) -> dict[tuple[str, str], list[str]]:
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    out = {}
    for ln in rows[1:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        out[(cells[0], cells[1])] = dict(zip(head, cells))
    return out


def _bound_stated(text: str) -> bool:
    return f"{LOSS_RISE_BOUND:g}x" in text and f"{NLL_BOUND:g} x log C" in text


def test_markdown(store):
    from ltbench.report.tables import load_table, render_markdown

    agg, _ = load_table(store)
    md = render_markdown(agg)
    cells = _md_cells(md)
    assert cells[("SGD", "CE")]["cifar10-lt-if100 n"] == f"3 {MARK}"
    assert cells[("SWA", "cRT")]["cifar10-lt-if100 n"] == f"1 {MARK}"
    assert cells[("SGD", "cRT")]["cifar10-lt-if100 n"] == "3"
    assert cells[("SGD", "LWS")]["cifar100-lt-if50 n"] == "1"
    foot = md.strip().splitlines()[-1]
    assert foot.count(MARK) == 1 and _bound_stated(foot)
    assert "cifar10-lt-if100 SGD + CE (seed 1)" in foot and "cifar10-lt-if100 SWA + cRT (seed 0)" in foot
    assert "cRT (seed" not in foot.replace("SWA + cRT (seed 0)", "")  # the stable settings are not named


def test_latex(store):
    from ltbench.report.tables import load_table, render_latex

    agg, _ = load_table(store)
    tex = render_latex(agg)
    row = next(ln for ln in tex.splitlines() if ln.startswith("SGD & CE &"))
    assert row.count(r"$^\ddagger$") == 1 and MARK not in tex
    crt = next(ln for ln in tex.splitlines() if ln.startswith(r"SGD & cRT &"))
    assert r"\ddagger" not in crt
    caption = next(ln for ln in tex.splitlines() if ln.startswith(r"\caption"))
    assert r"$^\ddagger$ unstable stage 2" in caption and "SGD + CE (seed 1)" in caption


def test_csv(store):
    from ltbench.report.tables import load_table, render_csv

    agg, _ = load_table(store)
    df = pd.read_csv(io.StringIO(render_csv(agg)), dtype={"unstable_seeds": str}).fillna({"unstable_seeds": ""})
    df = df.set_index(["dataset_tag", "stage1_mode", "method"])
    assert df.loc[("cifar10-lt-if100", "sgd", "ce"), "unstable"] == True  # noqa: E712
    assert df.loc[("cifar10-lt-if100", "sgd", "ce"), "unstable_seeds"] == "1"
    assert df.loc[("cifar10-lt-if100", "sgd", "crt"), "unstable"] == False  # noqa: E712
    assert df.loc[("cifar10-lt-if100", "sgd", "crt"), "unstable_seeds"] == ""


def test_no_marker_without_unstable_runs(stable_store):
    from ltbench.report.tables import load_table, render_csv, render_latex, render_markdown

    agg, _ = load_table(stable_store)
    for text in (render_markdown(agg), render_latex(agg)):
        assert MARK not in text and "ddagger" not in text and "unstable" not in text
    df = pd.read_csv(io.StringIO(render_csv(agg)))
    assert not df["unstable"].any()


def test_run_summary(store):
    """The table printed after `bench.py run` marks the run and names the reason."""
    from ltbench.report.summary import run_table_lines

    lines = run_table_lines([_dir(store, "sgd-ce", 0), _dir(store, "sgd-ce", 1)])
    rows = [ln for ln in lines if ln.startswith("cifar10-lt-if100/")]
    assert MARK not in rows[0] and rows[1].split("  ")[0].endswith(MARK)
    note = lines[lines.index(rows[1]) + 1:]
    assert note and note[0].startswith(f"{MARK} = unstable stage 2") and _bound_stated(note[0])
    assert "cifar10-lt-if100/sgd-ce/seed1: stage-2 loss rose" in note[1]
    stable = run_table_lines([_dir(store, "sgd-ce", 0)])
    assert not any(MARK in ln for ln in stable)


def test_leaderboard(store, tmp_path):
    import shutil

    from ltbench.report.leaderboard import build_leaderboard

    root = tmp_path / "store"
    shutil.copytree(store, root)
    build_leaderboard(root, plots=False, echo=lambda s: None)
    readme = (root / "README.md").read_text()
    section = readme.split("## cifar10-lt-if100", 1)[1].split("## ", 1)[0]
    cells = _md_cells(section)
    assert cells[("SGD", "CE")]["cifar10-lt-if100 n"] == f"3 {MARK}"
    assert cells[("SGD", "cRT")]["cifar10-lt-if100 n"] == "3"
    assert _bound_stated(section) and "SGD + CE (seed 1)" in section
    compare = readme.split("## Compared with published numbers", 1)[1]
    ce = next(ln for ln in compare.splitlines() if ln.startswith("| cifar10-lt-if100 | SGD + CE |"))
    assert f"3 {MARK}" in ce
    assert "SGD + CE (seeds 1)" in compare
    assert "SGD + cRT (seeds" not in compare
    assert (root / "tables" / "results.tex").read_text().count(r"$^\ddagger$") >= 3  # two rows + caption
    df = pd.read_csv(root / "tables" / "compare.csv", dtype={"unstable_seeds": str})
    assert set(df.loc[df.method == "ce", "unstable_seeds"]) == {"1"}


def test_stats_and_paired(store):
    from ltbench.report.stats import all_comparisons, render_csv, render_markdown, render_text

    comps = all_comparisons(store, replicates=0)
    by = {(c.dataset_tag, c.a, c.b): c for c in comps}
    c = by[("cifar10-lt-if100", "sgd-ce", "sgd-crt")]
    assert c.unstable == ["sgd-ce seed 1"]
    ext = by[("cifar10-lt-if100", "swa-crt", "sgd-crt")]  # paired over seed 0 only: swa-crt seed 0 is flagged
    assert ext.unstable == ["swa-crt seed 0"]
    md = render_markdown(comps, results="x")
    assert "SGD + CE − SGD + cRT ‡" in md and _bound_stated(md) and "`x/runs/`" in md
    assert "SGD + CE seed 1" in md
    df = pd.read_csv(io.StringIO(render_csv(comps))).fillna({"unstable": ""})
    assert set(df.loc[(df.a == "sgd-ce") & (df.b == "sgd-crt"), "unstable"]) == {"sgd-ce seed 1"}
    text = render_text(c)
    assert text.splitlines()[0].endswith(f"{MARK} unstable stage 2") and _bound_stated(text)
    assert MARK not in render_markdown([x for x in comps if not x.unstable])


def test_claims_mark_the_cell_of_an_unstable_pair(store):
    """The claims tables mark the one cell whose compared runs include an unstable stage 2 (swa-crt seed 0 here)
    and explain the mark; a store without unstable runs shows none."""
    from ltbench.report.stats import claim_tables, render_claims
    from ltbench.report.tables import collect_runs

    lines = render_claims(claim_tables(collect_runs(store).runs))
    row = next(ln for ln in lines if ln.startswith("| cifar10-lt-if100 |"))
    cells = [x.strip() for x in row.strip("|").split("|")]
    assert cells[2].endswith(f"1/1 {MARK}") and cells[1] == cells[3] == cells[4] == ""  # the cRT column only
    note = next(ln for ln in lines if ln.startswith(MARK))
    assert "SWA + cRT seed 0" in note and _bound_stated(note) and "SGD + CE" not in note  # no SWA + CE: not shown


def test_claims_without_unstable_runs_have_no_mark(tmp_path):
    from ltbench.report.stats import claim_tables, render_claims
    from ltbench.report.tables import collect_runs

    for s in range(2):
        for stage1, acc in (("sgd", 0.6), ("swa", 0.65)):
            _stable_log(make_run(tmp_path, "crt", stage1, s, acc)[0])
    lines = render_claims(claim_tables(collect_runs(tmp_path).runs))
    assert any(ln.startswith("| cifar10-lt-if100 |") for ln in lines) and MARK not in "\n".join(lines)


def test_site(store, tmp_path):
    from ltbench.report.site import build_site

    out = tmp_path / "site"
    build_site(store, out, replicates=0, echo=lambda s: None, write_stats_files=False)
    index = (out / "index.html").read_text()
    assert index.count("tag unstable") == 1  # the cifar10 card only
    page = (out / "cifar10-lt-if100" / "index.html").read_text()
    ce = next(ln for ln in page.splitlines() if 'data-run="sgd-ce"' in ln)
    assert f"3 {MARK}</td>" in ce and "tag unstable" in ce
    crt = next(ln for ln in page.splitlines() if 'data-run="sgd-crt"' in ln)
    assert MARK not in crt
    assert "SGD + CE seed 1: stage-2 loss rose" in page and f"{NLL_BOUND:g} x log C" in page
    method = (out / "cifar10-lt-if100" / "sgd-ce.html").read_text()
    seed_cells = [ln for ln in method.splitlines() if ln.startswith('<tr><td data-v="')]
    assert [MARK in ln for ln in seed_cells] == [False, True, False]
    assert MARK not in (out / "cifar100-lt-if50" / "index.html").read_text()
    assert MARK in (out / "cifar10-lt-if100" / "stats.html").read_text()


def test_plot_labels():
    from ltbench.report.plots import setting_label

    assert setting_label("sgd", "ce", False, True) == "SGD + CE ‡"
    assert setting_label("swa", "crt", True, True) == "SWA + cRT † ‡"
    assert setting_label("sgd", "ce") == "SGD + CE"
