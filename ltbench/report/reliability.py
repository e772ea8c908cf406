"""Reliability diagram of one run, drawn from its prediction arrays (the same 15 bins as ECE).

Under each diagram a strip shows how many test examples fall in each bin (log scale, with the count written on
the bar): a bin of one example at accuracy 1.0 must not look as meaningful as a bin of thousands.
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ..metrics import ece, reliability_bins  # noqa: E402

ACC_COLOR = "#4c72b0"
OVER_COLOR = "#dd8452"   # confidence above accuracy (over-confident): drawn above the accuracy bar
UNDER_COLOR = "#55a868"  # accuracy above confidence (under-confident): the top of the accuracy bar, hatched
COUNT_COLOR = "#8c8c8c"
FEW = 30  # bins with fewer examples are drawn faded: their accuracy is noise


def _count_label(n: int) -> str:
    return f"{n / 1000:.0f}k" if n >= 10_000 else f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def count_strip(ax, b: dict[str, np.ndarray]) -> None:
    """Examples per bin as bars on a log axis, each labelled with its count."""
    centers = (b["edges"][:-1] + b["edges"][1:]) / 2
    width = b["edges"][1] - b["edges"][0]
    used = b["count"] > 0
    ax.bar(centers[used], b["count"][used], width=width, color=COUNT_COLOR, edgecolor="white", lw=0.5,
           label="examples per bin")
    ax.set_yscale("log")
    top = max(b["count"].max(), 1)
    ax.set_ylim(0.7, top * 80)  # room above the tallest bar for its (vertical) label
    for x, n in zip(centers[used], b["count"][used]):
        ax.text(x, n * 1.2, _count_label(int(n)), ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_yticks([])
    ax.minorticks_off()
    ax.set_ylabel("examples", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("confidence (max softmax)")


def reliability_axes(ax, arrays: dict[str, np.ndarray], label: str | None = None, bars: bool = True,
                     count_ax=None, legend: bool = True, **line_kw) -> dict[str, np.ndarray]:
    """Draw the diagram on ``ax`` (bars, or one curve with ``bars=False``); counts on ``count_ax`` if given.

    Returns the bins drawn (``metrics.reliability_bins``), so callers and tests see exactly what is on the figure.
    """
    correct = arrays["pred"] == arrays["labels"]
    b = reliability_bins(arrays["confidence"], correct)
    centers = (b["edges"][:-1] + b["edges"][1:]) / 2
    width = b["edges"][1] - b["edges"][0]
    used = b["count"] > 0
    e = ece(arrays["confidence"], correct)
    text = f"{label + ': ' if label else ''}ECE {e:.2f}%"
    if bars:
        acc, conf = b["acc"][used], b["conf"][used]
        alpha = np.where(b["count"][used] < FEW, 0.35, 1.0)
        for x, a, c, al in zip(centers[used], acc, conf, alpha):
            ax.bar(x, a, width=width, edgecolor="black", lw=0.6, color=ACC_COLOR, alpha=al)
            if c > a:
                ax.bar(x, c - a, bottom=a, width=width, color=OVER_COLOR, alpha=0.55 * al, edgecolor=OVER_COLOR)
            elif a > c:
                ax.bar(x, a - c, bottom=c, width=width, color=UNDER_COLOR, alpha=0.8 * al, edgecolor="black",
                       lw=0.6, hatch="////")
        handles = [Patch(facecolor=ACC_COLOR, edgecolor="black", label=f"accuracy ({text})"),
                   Patch(facecolor=OVER_COLOR, alpha=0.55, label="over-confident gap (conf > acc)"),
                   Patch(facecolor=UNDER_COLOR, alpha=0.8, edgecolor="black", hatch="////",
                         label="under-confident gap (acc > conf)")]
        if (b["count"][used] < FEW).any():
            handles.append(Patch(facecolor=ACC_COLOR, alpha=0.35, edgecolor="black", label=f"faded: < {FEW} examples"))
        if legend:
            ax.legend(handles=handles, loc="upper left", fontsize=6.5, framealpha=0.9)
    else:
        kw = {"marker": "o"} | line_kw
        solid = b["count"] >= FEW  # the curve joins only bins with enough examples to mean something
        (line,) = ax.plot(b["conf"][solid], b["acc"][solid], label=text, **kw)
        few = used & ~solid
        if few.any():  # thin bins: a small faint marker, not joined to the curve
            ax.plot(b["conf"][few], b["acc"][few], ls="none", marker=kw["marker"], color=line.get_color(),
                    mfc=kw.get("mfc", line.get_color()), ms=0.6 * line.get_markersize(), alpha=0.35)
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    if count_ax is not None:
        count_strip(count_ax, b)
        ax.tick_params(labelbottom=False)
    else:
        ax.set_xlabel("confidence (max softmax)")
    return b


def reliability_figure(n_panels: int, cols: int, panel: float = 3.3):
    """A figure with, per panel, a reliability axes and a count strip beneath it; returns (fig, [(ax, strip)]).

    Constrained layout (nested grids): do not call ``tight_layout`` on it.
    """
    rows = -(-n_panels // cols)
    fig = plt.figure(figsize=(panel * cols, panel * 1.25 * rows), layout="constrained")
    outer = fig.add_gridspec(rows, cols)
    pairs = []
    for i in range(n_panels):
        inner = outer[divmod(i, cols)].subgridspec(2, 1, height_ratios=[4, 1], hspace=0.02)
        ax = fig.add_subplot(inner[0])
        pairs.append((ax, fig.add_subplot(inner[1], sharex=ax)))
    return fig, pairs


def reliability_png(arrays: dict[str, np.ndarray], title: str) -> bytes:
    fig, [(ax, strip)] = reliability_figure(1, 1, panel=4)
    reliability_axes(ax, arrays, count_ax=strip)
    ax.set_title(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
