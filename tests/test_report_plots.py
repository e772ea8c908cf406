"""Every figure renders to a non-trivial PNG (and a PDF); the leaderboard is generated, kept current, and says
clearly when there are no runs."""
from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from ltbench.report.leaderboard import build_leaderboard
from ltbench.report.plots import plot_all
from ltbench.report.tables import aggregate, collect_runs
from report_fixtures import COMMITTED_STORES, STORE_IDS, build_results, copy_store

FIGURES = ("reliability", "reliability-overlay", "per-class", "acc-vs-ece")
TAGS = ("cifar10-lt-if100", "cifar100-lt-if50")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    build_results(root)
    return root


def _check_png(p: Path) -> None:
    assert p.stat().st_size > 8_000, f"{p} is suspiciously small"
    img = mpimg.imread(p)[..., :3]
    assert img.shape[0] > 200 and img.shape[1] > 200
    assert img.std() > 0.05, f"{p} is nearly blank"
    assert (img < 0.5).mean() > 0.005, f"{p} has almost no dark (drawn) pixels"


def test_every_plot_renders(results, tmp_path):
    col = collect_runs(results)
    paths = plot_all(col.runs, aggregate(col.runs), tmp_path)
    want = {tmp_path / f"{t}-{f}.{ext}" for t in TAGS for f in FIGURES for ext in ("png", "pdf")}
    assert set(paths) == want
    for p in want:
        if p.suffix == ".png":
            _check_png(p)
        else:
            assert p.read_bytes()[:5] == b"%PDF-" and p.stat().st_size > 5_000


def test_leaderboard_written_and_pruned(results, tmp_path):
    stale = results / "plots" / "gone-dataset-per-class.png"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"old")
    msgs: list[str] = []
    written = build_leaderboard(results, echo=msgs.append)
    readme = (results / "README.md").read_text()
    assert results / "README.md" in written and not stale.exists()
    for t in TAGS:
        assert f"## {t}" in readme
        for f in FIGURES:
            assert f"plots/{t}-{f}.png" in readme
            _check_png(results / "plots" / f"{t}-{f}.png")
    for f in ("results.tex", "results.md", "results.csv", "compare.md", "compare.csv"):
        assert (results / "tables" / f).is_file()
    # CE on CIFAR-10-LT IF100 has a published number; it is compared, with its source
    assert "## Compared with published numbers" in readme and "BagofTricks-LT" in readme
    assert "## Runs left out" in readme and "failed audit" in readme
    assert any("excluded" in m for m in msgs)
    # ranked by accuracy within a dataset: sgd-crt (acc ~62) above sgd-ce (acc ~45)
    sec = readme.split("## cifar10-lt-if100")[1].split("##")[0]
    assert sec.index("| SGD | cRT |") < sec.index("| SGD | CE |")


def test_leaderboard_includes_the_findings_file(results):
    (results / "findings.md").write_text("## What the runs show\n\nSRepr beats cRT on ECE in this fixture.\n")
    build_leaderboard(results, plots=False, echo=lambda s: None)
    readme = (results / "README.md").read_text()
    assert "## What the runs show" in readme and "SRepr beats cRT on ECE in this fixture." in readme
    # placed after the result tables, before the comparison with published numbers
    assert readme.index("## cifar10-lt-if100") < readme.index("## What the runs show") < readme.index(
        "## Compared with published numbers")
    (results / "findings.md").unlink()
    build_leaderboard(results, plots=False, echo=lambda s: None)
    assert "What the runs show" not in (results / "README.md").read_text()


def test_no_plots_leaves_the_plots_folder_alone(results):
    """``--no-plots`` makes no plots, so it must not prune the ones an earlier full call made (it used to delete
    them all); stale tables are still pruned."""
    build_leaderboard(results, echo=lambda s: None)
    before = {p.name: p.read_bytes() for p in (results / "plots").iterdir()}
    assert len(before) == 2 * len(TAGS) * len(FIGURES)
    stale_table = results / "tables" / "gone.csv"
    stale_table.write_text("old")
    build_leaderboard(results, plots=False, echo=lambda s: None)
    assert {p.name: p.read_bytes() for p in (results / "plots").iterdir()} == before
    assert not stale_table.exists()
    assert "plots/" not in (results / "README.md").read_text()


def test_leaderboard_without_runs(tmp_path):
    (tmp_path / "runs").mkdir()  # an empty store (a folder without runs/ is refused: test_store_integrity.py)
    msgs: list[str] = []
    build_leaderboard(tmp_path, echo=msgs.append)
    readme = (tmp_path / "README.md").read_text()
    assert "No sound runs recorded yet" in readme and any("No sound runs" in m for m in msgs)


def test_per_class_bin_means_by_hand():
    from ltbench.report.plots import _log_bin_means
    counts = np.array([5, 5, 50, 50, 500])
    acc = np.array([10.0, 30.0, 40.0, 60.0, 80.0])
    # two log-spaced bins over [5, 500]: [5, 50) and [50, 500]
    xs, ys = _log_bin_means(counts, acc, n_bins=2)
    np.testing.assert_allclose(ys, [20.0, 60.0])
    np.testing.assert_allclose(xs, [5.0, (50 * 50 * 500) ** (1 / 3)])
    # an empty bin is skipped, not plotted as NaN
    xs, ys = _log_bin_means(np.array([1, 1000]), np.array([0.0, 100.0]), n_bins=3)
    assert len(xs) == 2 and list(ys) == [0.0, 100.0]


def test_regenerating_unchanged_runs_is_byte_identical(results):
    """Plots carry no timestamp, so a regenerated leaderboard differs in git only where the runs changed."""
    first = {p: p.read_bytes() for p in build_leaderboard(results, echo=lambda s: None)}
    second = {p: p.read_bytes() for p in build_leaderboard(results, echo=lambda s: None)}
    assert first.keys() == second.keys()
    changed = [p.name for p in first if first[p] != second[p]]
    assert not changed, changed


@pytest.mark.parametrize("repo_results", COMMITTED_STORES, ids=STORE_IDS)
def test_committed_leaderboard_is_current(repo_results, tmp_path, monkeypatch):
    """<store>/README.md and <store>/tables/* are what `bench.py leaderboard --results <store>` makes of the
    committed runs today (run from the folder holding the copy, as from the checkout)."""
    if not (repo_results / "README.md").is_file():
        pytest.skip("no committed leaderboard")
    rel = copy_store(repo_results, tmp_path)
    copy = tmp_path / rel
    monkeypatch.chdir(tmp_path)
    build_leaderboard(rel, echo=lambda s: None)
    tables = sorted((repo_results / "tables").iterdir()) if (repo_results / "tables").is_dir() else []
    for name in ["README.md", *(f"tables/{p.name}" for p in tables)]:
        assert (copy / name).read_text() == (repo_results / name).read_text(), (
            f"{rel}/{name} is stale: run `bench.py leaderboard --results {rel}` and commit")
