"""The figures are readable at a glance: reliability bins carry their example counts, both gap colours are in the
legend, and settings never share a look (marker, colour, line) even where their points coincide."""
from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ltbench.report import plots  # noqa: E402
from ltbench.report.reliability import reliability_axes, reliability_figure  # noqa: E402
from ltbench.report.tables import aggregate, collect_runs  # noqa: E402
from report_fixtures import build_results, make_run  # noqa: E402


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    build_results(root)
    for i, m in enumerate(["lws", "tau_norm", "swag", "srepr"]):
        make_run(root, m, "swa", 0, 0.5 + 0.03 * i)
    return root


@pytest.fixture
def figures(monkeypatch):
    """Capture the figures the plot functions build instead of writing them."""
    got: dict[str, plt.Figure] = {}
    monkeypatch.setattr(plots, "_save", lambda fig, stem, formats=None: got.setdefault(Path(stem).name, fig) and [])
    yield got
    plt.close("all")


def _numpy_counts(conf: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """Examples per (l, u] bin, computed with pandas.cut rather than the library's binning."""
    cut = pd.cut(conf.astype(np.float64), np.linspace(0, 1, n_bins + 1), right=True, labels=False)
    return np.bincount(cut.astype(int), minlength=n_bins)


def test_count_strip_matches_predictions(results):
    run = next((results / "runs").rglob("predictions.npz"))
    arrays = dict(np.load(run))
    fig, [(ax, strip)] = reliability_figure(1, 1)
    reliability_axes(ax, arrays, count_ax=strip)
    want = _numpy_counts(arrays["confidence"])
    drawn = {round(p.get_x() + p.get_width() / 2, 6): p.get_height() for p in strip.patches}
    centers = np.round((np.arange(15) + 0.5) / 15, 6)
    assert {c: h for c, h in drawn.items()} == {c: float(n) for c, n in zip(centers, want) if n}
    # every non-empty bin is labelled with its count (numbers here are < 1000, so written in full)
    assert sorted(int(t.get_text()) for t in strip.texts) == sorted(int(n) for n in want if n)
    plt.close(fig)


def test_one_example_bin_is_visible_as_one(tmp_path):
    conf = np.r_[np.full(200, 0.55), 0.05].astype(np.float32)  # one lone, correct example at confidence 0.05
    labels = np.zeros(201, dtype=np.int64)
    arrays = {"confidence": conf, "labels": labels, "pred": np.r_[np.arange(200) % 2, 0].astype(np.int64)}
    fig, [(ax, strip)] = reliability_figure(1, 1)
    b = reliability_axes(ax, arrays, count_ax=strip)
    assert b["count"][0] == 1 and b["acc"][0] == 1.0
    assert "1" in [t.get_text() for t in strip.texts] and "200" in [t.get_text() for t in strip.texts]
    # the 1-example accuracy bar is drawn faded, the 200-example one solid
    acc_bars = [p for p in ax.patches if np.isclose(p.get_y(), 0)]
    alpha = {round(p.get_x() + p.get_width() / 2, 3): p.get_alpha() for p in acc_bars}
    assert alpha[round(0.5 / 15, 3)] < 0.5 and alpha[round(8.5 / 15, 3)] == 1.0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("under-confident" in t for t in legend) and any("over-confident" in t for t in legend)
    assert any("< 30 examples" in t for t in legend)
    plt.close(fig)


def test_under_confidence_bar_is_in_the_legend(results, figures):
    col = collect_runs(results)
    tag = "cifar10-lt-if100"
    plots.plot_reliability(col.runs, tag, Path("/nonexistent"))
    fig = figures[f"{tag}-reliability"]
    panels = [ax for ax in fig.axes if ax.get_legend() is not None]
    assert len(panels) == len(plots._settings(col.runs, tag))
    for ax in panels:
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("under-confident gap (acc > conf)" in t for t in texts)
    # each panel has a count strip: one axes per panel on a log scale
    assert sum(ax.get_yscale() == "log" for ax in fig.axes) == len(panels)


def test_every_setting_looks_different():
    from ltbench.registry import get_method, method_names
    pairs = [(s, m) for s in ("sgd", "swa") for m in method_names() if not (get_method(m).requires_swag and s != "swa")]
    looks = [plots.setting_style(s, m, i) for i, (s, m) in enumerate(plots._row_order(
        pd.DataFrame(pairs, columns=["stage1_mode", "method"])))]
    assert len(looks) >= 10
    for a, b in itertools.combinations(looks, 2):  # marker, line style and fill alone tell any two apart
        assert (a["marker"], a["ls"], a["mfc"]) != (b["marker"], b["ls"], b["mfc"])
    for a, b in itertools.combinations(looks[:10], 2):  # and up to 10 settings also differ in colour
        assert a["color"] != b["color"]


def test_coincident_points_are_spread():
    x = np.array([1.0, 1.0, 1.01, 20.0, 10.0])
    y = np.array([50.0, 50.0, 50.05, 60.0, 55.0])
    off = plots.coincident_offsets(x, y)
    assert len(set(off[:3])) == 3 and off[:3].sum() == pytest.approx(0)  # centred on the common place
    assert off[3] == 0 and off[4] == 0


def test_acc_vs_ece_and_overlay_legends_outside_data(results, figures):
    col = collect_runs(results)
    agg = aggregate(col.runs)
    tag = "cifar10-lt-if100"
    plots.plot_acc_vs_ece(agg, tag, Path("/nonexistent"))
    plots.plot_reliability(col.runs, tag, Path("/nonexistent"))
    for name in (f"{tag}-acc-vs-ece", f"{tag}-reliability-overlay"):
        fig = figures[name]
        fig.canvas.draw()
        ax = fig.axes[0]
        leg = ax.get_legend()
        assert leg.get_window_extent().x0 >= ax.get_window_extent().x1, f"{name}: legend overlaps the data"
    # all settings of the tag are in the acc-vs-ece legend, each with its own marker look
    ax = figures[f"{tag}-acc-vs-ece"].axes[0]
    n = (agg.dataset_tag == tag).sum()
    lines = [c[0] for c in ax.containers]
    assert len(lines) == n
    looks = {(ln.get_marker(), ln.get_markerfacecolor() if isinstance(ln.get_markerfacecolor(), str)
              else tuple(ln.get_markerfacecolor()), tuple(ln.get_color()) if not isinstance(ln.get_color(), str)
              else ln.get_color()) for ln in lines}
    assert len(looks) == n
