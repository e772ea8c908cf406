"""Figures across runs: reliability diagrams (per method and overlaid), per-class accuracy against training-class
frequency, and accuracy against ECE. Each figure is written as PNG and PDF, one set per dataset tag.

Figures pool the test predictions of all seeds of a setting (the same 15 bins as ECE), so a diagram shows every
stored prediction rather than one arbitrary seed.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullFormatter  # noqa: E402
import pandas as pd  # noqa: E402

from ..checkpoint import atomic_write_bytes  # noqa: E402
from ..errors import LtbenchError  # noqa: E402
from ..metrics import per_class_accuracy, shot_groups  # noqa: E402
from ..store import read_run  # noqa: E402
from .reliability import FEW, reliability_axes, reliability_figure  # noqa: E402
from .tables import STAGE1_NAMES, _row_order, method_label, split_method_key  # noqa: E402

PLOT_FORMATS = ("png", "pdf")


def setting_label(stage1: str, method: str, reduced: bool = False, unstable: bool = False) -> str:
    """'SGD + cRT', with † for a reduced schedule and ‡ for an unstable stage 2 (as in the tables)."""
    return (f"{STAGE1_NAMES.get(stage1, stage1)} + {method_label(method)}" + (" †" if reduced else "")
            + (" ‡" if unstable else ""))


def _unstable(g) -> bool:
    """Any seed of these runs (or this aggregated row) flagged unstable."""
    return bool(np.any(g["unstable"])) if "unstable" in g else False


METHOD_MARKERS = {"ce": "o", "crt": "s", "lws": "^", "tau_norm": "D", "swag": "P", "srepr": "*"}
OTHER_MARKERS = ("v", "X", "h", "<", ">", "p", "8")
STAGE1_LINES = {"sgd": "-", "swa": "--"}


def setting_style(stage1: str, method: str, index: int) -> dict:
    """Colour per setting (tab10 by position), marker per method, line style per extractor, and hollow markers
    for the SWA extractor: two settings never look alike even where their curves or points coincide."""
    base = split_method_key(method)[0]  # a variant row keeps its method's marker
    marker = METHOD_MARKERS.get(base) or OTHER_MARKERS[sum(map(ord, method)) % len(OTHER_MARKERS)]
    color = plt.get_cmap("tab10")(index % 10)
    hollow = stage1 != "sgd"
    return {"color": color, "marker": marker, "ls": STAGE1_LINES.get(stage1, ":"),
            "mfc": "white" if hollow else color, "mec": color, "mew": 1.4 if hollow else 1.0}


def pooled_predictions(dirs: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Concatenate the prediction arrays of several seeds; return them with the training class counts."""
    runs = [read_run(Path(d)) for d in dirs]
    arrays = {k: np.concatenate([r["predictions"][k] for r in runs]) for k in runs[0]["predictions"]}
    return arrays, np.asarray(runs[0]["config"]["train_class_counts"])


def _save(fig, stem: Path, formats=PLOT_FORMATS) -> list[Path]:
    out = []
    for fmt in formats:
        buf = io.BytesIO()
        # no creation date in the PDF: regenerating unchanged runs gives byte-identical files (clean git diffs)
        meta = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(buf, format=fmt, dpi=120 if fmt == "png" else None, metadata=meta)
        path = stem.with_suffix(f".{fmt}")
        atomic_write_bytes(path, buf.getvalue())
        out.append(path)
    plt.close(fig)
    return out


def _settings(runs: pd.DataFrame, tag: str) -> list[tuple[str, str, pd.DataFrame]]:
    sub = runs[runs.dataset_tag == tag]
    return [(s, m, sub[(sub.stage1_mode == s) & (sub.method == m)]) for s, m in _row_order(sub)]


def plot_reliability(runs: pd.DataFrame, tag: str, out: Path) -> list[Path]:
    """One reliability panel per setting (with its count strip), plus one overlaid figure with a curve per setting."""
    settings = _settings(runs, tag)
    fig, pairs = reliability_figure(len(settings), cols=min(len(settings), 4))
    for (ax, strip), (s, m, g) in zip(pairs, settings):
        arrays, _ = pooled_predictions(list(g["dir"]))
        reliability_axes(ax, arrays, count_ax=strip)
        seeds = f"{len(g)} seeds pooled" if len(g) > 1 else "1 seed"
        ax.set_title(f"{setting_label(s, m, g.reduced.any(), _unstable(g))} ({seeds})", fontsize=9)
    fig.suptitle(f"{tag}: reliability per method (strips: test examples per confidence bin, log scale)",
                 fontsize=10)
    paths = _save(fig, out / f"{tag}-reliability")
    fig, ax = plt.subplots(figsize=(7.8, 4.8))
    for i, (s, m, g) in enumerate(settings):
        arrays, _ = pooled_predictions(list(g["dir"]))
        reliability_axes(ax, arrays, label=setting_label(s, m, g.reduced.any(), _unstable(g)), bars=False,
                         **setting_style(s, m, i), ms=5, lw=1.3, alpha=0.9)
    ax.set_xlabel("mean confidence of the bin (max softmax)")
    ax.set_title(f"{tag}: reliability, overlaid (15 bins; ECE of all seeds pooled)", fontsize=9)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title=f"solid: SGD, dashed: SWA extractor\n"
              f"faint unjoined markers: bins of < {FEW} examples", title_fontsize=7)
    fig.tight_layout()
    return paths + _save(fig, out / f"{tag}-reliability-overlay")


def _log_bin_means(counts: np.ndarray, acc: np.ndarray, n_bins: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Mean accuracy of the classes in ``n_bins`` log-spaced training-count bins; x = geometric mean count."""
    span = np.log(counts.max() / counts.min()) or 1.0
    # bin b holds counts in [min * r^b, min * r^(b+1)), r = (max/min)^(1/n_bins); a count on an edge goes up
    # (the 1e-9 keeps float rounding from moving it down), the maximum into the last bin
    idx = np.clip(np.floor(np.log(counts / counts.min()) / span * n_bins + 1e-9).astype(int), 0, n_bins - 1)
    xs, ys = [], []
    for b in range(n_bins):
        sel = idx == b
        if sel.any():
            xs.append(float(np.exp(np.log(counts[sel]).mean())))
            ys.append(float(np.nanmean(acc[sel])))
    return np.array(xs), np.array(ys)


def plot_per_class(runs: pd.DataFrame, tag: str, out: Path) -> list[Path]:
    """Per-class test accuracy (mean over seeds) against the class's training-image count, log x axis.

    One faint dot per class and method, and per method a line through the mean accuracy of log-spaced count
    bins: a line per class would zigzag between classes of equal count and hide the trend.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    counts = None
    for i, (s, m, g) in enumerate(_settings(runs, tag)):
        accs = []
        for d in g["dir"]:
            r = read_run(Path(d))
            p = r["predictions"]
            counts = np.asarray(r["config"]["train_class_counts"])
            accs.append(per_class_accuracy(p["pred"], p["labels"], len(counts)))
        acc = 100 * np.nanmean(np.vstack(accs), axis=0)
        (line,) = ax.plot(*_log_bin_means(counts, acc), ms=5, lw=1.5, **setting_style(s, m, i),
                          label=setting_label(s, m, g.reduced.any(), _unstable(g)))
        ax.scatter(counts, acc, s=5, alpha=0.2, color=line.get_color(), linewidths=0)
    groups = shot_groups(counts)
    for x in (100.5, 19.5):
        if counts.min() < x < counts.max():
            ax.axvline(x, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(FormatStrFormatter("%g") if counts.max() / counts.min() < 20 else NullFormatter())
    ax.set_xlabel("training images in the class (log scale)")
    ax.set_ylabel("test accuracy of the class (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(f"{tag}: per-class accuracy vs. class frequency\n(dots: classes; lines: mean of log-spaced bins; "
                 f"many {groups['many'].sum()}, medium {groups['medium'].sum()}, few {groups['few'].sum()} classes)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return _save(fig, out / f"{tag}-per-class")


def coincident_offsets(x: np.ndarray, y: np.ndarray, tol: float = 0.03, step: float = 9.0) -> np.ndarray:
    """Horizontal display offsets (points) that spread out markers closer than ``tol`` of the axis span in both
    x and y; members of a group sit ``step`` points apart around their common place, the rest stay put."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    span = lambda v: (np.nanmax(v) - np.nanmin(v)) or 1.0  # noqa: E731
    xn, yn = (x - np.nanmin(x)) / span(x), (y - np.nanmin(y)) / span(y)
    group = -np.ones(len(x), dtype=int)
    for i in range(len(x)):  # single-link grouping, in input order (deterministic)
        if group[i] < 0:
            group[i] = i
        for j in range(i + 1, len(x)):
            if group[j] < 0 and abs(xn[i] - xn[j]) < tol and abs(yn[i] - yn[j]) < tol:
                group[j] = group[i]
    off = np.zeros(len(x))
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        off[members] = (np.arange(len(members)) - (len(members) - 1) / 2) * step
    return off


def plot_acc_vs_ece(agg: pd.DataFrame, tag: str, out: Path) -> list[Path]:
    """Each setting as a point (mean over seeds) with std error bars: top-left is accurate and calibrated.

    Points that (nearly) coincide are drawn a few points apart sideways, and the title says so.
    """
    sub = agg[agg.dataset_tag == tag].reset_index(drop=True)
    order = {p: i for i, p in enumerate(_row_order(sub))}
    fig, ax = plt.subplots(figsize=(7.8, 4.6))
    offsets = coincident_offsets(sub.ece_mean.to_numpy(), sub.acc_mean.to_numpy())
    for (_, r), dx in zip(sub.iterrows(), offsets):
        xerr = None if math.isnan(r.ece_std) else r.ece_std
        yerr = None if math.isnan(r.acc_std) else r.acc_std
        st = setting_style(r.stage1_mode, r.method, order[(r.stage1_mode, r.method)])
        ax.errorbar(r.ece_mean, r.acc_mean, xerr=xerr, yerr=yerr, marker=st["marker"], color=st["color"],
                    mfc=st["mfc"], mec=st["mec"], mew=st["mew"], ms=8, capsize=3, elinewidth=1, ls="none",
                    transform=offset_copy(ax.transData, fig=fig, x=dx, units="points"),
                    label=f"{setting_label(r.stage1_mode, r.method, r.reduced, _unstable(r))} (n={r.n})")
        ex, ey = xerr or 0.0, yerr or 0.0  # an offset transform keeps the data limits from updating
        ax.update_datalim([(r.ece_mean - ex, r.acc_mean - ey), (r.ece_mean + ex, r.acc_mean + ey)])
    ax.autoscale_view()
    ax.set_xlabel("ECE (%) - lower is better")
    ax.set_ylabel("top-1 accuracy (%)")
    moved = "; coinciding points drawn side by side" if np.any(offsets) else ""
    ax.set_title(f"{tag}: accuracy vs. calibration (mean ± std over seeds{moved})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(0.08)
    handles, labels = ax.get_legend_handles_labels()
    rank = sorted(range(len(labels)), key=lambda i: order[tuple(sub.loc[i, ["stage1_mode", "method"]])])
    ax.legend([handles[i] for i in rank], [labels[i] for i in rank], fontsize=7, loc="center left",
              bbox_to_anchor=(1.01, 0.5), title="filled: SGD, hollow: SWA extractor", title_fontsize=7)
    fig.tight_layout()
    return _save(fig, out / f"{tag}-acc-vs-ece")


def plot_all(runs: pd.DataFrame, agg: pd.DataFrame, out: Path | str) -> list[Path]:
    """Every figure for every dataset tag present; returns the files written."""
    if runs.empty:
        raise LtbenchError("no runs to plot")
    out = Path(out)
    paths: list[Path] = []
    for tag in sorted(runs.dataset_tag.unique()):
        paths += plot_reliability(runs, tag, out)
        paths += plot_per_class(runs, tag, out)
        paths += plot_acc_vs_ece(agg, tag, out)
    return paths
