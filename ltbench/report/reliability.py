"""Reliability diagram of one run, drawn from its prediction arrays (the same 15 bins as ECE)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..metrics import ece, reliability_bins  # noqa: E402


def reliability_axes(ax, arrays: dict[str, np.ndarray], label: str | None = None, bars: bool = True) -> None:
    correct = arrays["pred"] == arrays["labels"]
    b = reliability_bins(arrays["confidence"], correct)
    centers = (b["edges"][:-1] + b["edges"][1:]) / 2
    width = b["edges"][1] - b["edges"][0]
    used = b["count"] > 0
    e = ece(arrays["confidence"], correct)
    text = f"{label + ': ' if label else ''}ECE {e:.2f}%"
    if bars:
        ax.bar(centers[used], b["acc"][used], width=width, edgecolor="black", color="#4c72b0", label=text)
        ax.bar(centers[used], (b["conf"] - b["acc"])[used], bottom=b["acc"][used], width=width,
               color="#dd8452", alpha=0.5, edgecolor="#dd8452", label="gap")
    else:
        ax.plot(b["conf"][used], b["acc"][used], marker="o", label=text)
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max softmax)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)


def reliability_png(arrays: dict[str, np.ndarray], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    reliability_axes(ax, arrays)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
