"""Results tables: collect audited run folders, aggregate over seeds, render LaTeX / Markdown / CSV.

Rows are stage-1 extractor x method, column groups are dataset (with imbalance factor). Every number is the mean
over seeds, with the sample standard deviation (ddof=1) when there are two or more seeds, and the seed count.
Runs that fail ``ltbench.audit.check_run`` never reach a table: they are reported to the caller instead.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..audit import LOSS_RISE_BOUND, NLL_BOUND, check_run, stability_flags
from ..errors import LtbenchError
from .. import paths
from ..paths import config_dataset_tag
from ..store import as_recorded, iter_run_dirs, read_run

METRICS: list[tuple[str, str, bool]] = [  # (metrics.json key, column name, higher is better)
    ("acc", "acc", True), ("acc_many", "many", True), ("acc_medium", "medium", True), ("acc_few", "few", True),
    ("nll", "NLL", False), ("ece", "ECE", False),
]
EXTRA_METRICS = ("brier",)  # kept in the CSV, not in the printed tables
FORMATS = ("latex", "markdown", "csv")
# compute cost per run, from config.json: stage-1 training time of the extractor the run used (shared by every
# stage-2 method on the same seed and extractor) and the stage-2 time of the method itself, in seconds
COST_KEYS = ("stage1_train_time_s", "stage2_time_s")
COST_NAMES = {"stage1_train_time_s": "stage-1 time", "stage2_time_s": "stage-2 time"}
# marks on a setting's seed count n, each explained in the footnote: a reduced schedule, an unstable stage 2
REDUCED_MARK = "†"
UNSTABLE_MARK = "‡"


def tau_choice(config: dict) -> tuple[float, str]:
    """(tau, how it was chosen) of a tau-norm run, from config.json's method_info; (NaN, '') for other methods.

    The rule is one of 'held-out', 'degenerate' (the held-out sweep could not tell the taus apart, the fixed tau
    was used), 'fixed', 'oracle' (test set), or 'not recorded'. A run from before the rule was saved that holds a
    held-out sweep (``heldout_size``) chose on it: 'held-out'.
    """
    info = config.get("method_info") or {}
    if not str(config.get("method", "")).startswith("tau_norm"):
        return math.nan, ""
    tau = float(info["tau"]) if isinstance(info.get("tau"), (int, float)) else math.nan
    how = str(info.get("tau_selection", ""))
    if info.get("oracle"):
        return tau, "oracle"
    if how == "holdout":
        return tau, "held-out"
    if how.startswith("fixed:"):
        return tau, "degenerate"
    if how == "fixed":
        return tau, "fixed"
    return tau, ("held-out" if not how and "heldout_size" in info else "not recorded")


def tau_footnote(agg: pd.DataFrame) -> str:
    """How tau was chosen in the tau-norm rows of ``agg``, with the taus used; '' when there are none."""
    choices = [c for cs in agg.get("tau_choices", pd.Series(dtype=object)) if isinstance(cs, list) for c in cs]
    if not choices:
        return ""
    groups: dict[str, list[float]] = {}
    for tau, rule in choices:
        groups.setdefault(rule, []).append(tau)

    def span(v: list[float]) -> str:
        v = [x for x in v if not math.isnan(x)]
        if not v:
            return "tau ?"
        return f"tau {min(v):g}" if min(v) == max(v) else f"tau {min(v):g}-{max(v):g}"
    what = {"held-out": "chosen on held-out training images", "degenerate": "held-out sweep degenerate, fixed tau",
            "fixed": "fixed by option", "oracle": "oracle (test set)", "not recorded": "rule not recorded"}
    used = ", ".join(f"{what[r]}: {span(v)} in {len(v)} run{'s' if len(v) > 1 else ''}"
                     for r, v in sorted(groups.items(), key=lambda kv: list(what).index(kv[0])))
    parts = []
    if any(r != "oracle" for r in groups):
        parts.append("tau-norm: tau chosen without test labels, by the best balanced accuracy on a held-out share "
                     "(default 20 %) of each class's training images, or the fixed tau (default 1) when that sweep "
                     "is degenerate (the network has memorised those images)")
    if "oracle" in groups:
        parts.append("tau-norm (oracle) takes the tau with the best test accuracy, an upper bound set beside "
                     "published rows that tuned tau on the test set")
    return "; ".join(parts) + f"; per run in config.json (method_info.tau); here {used}"


def run_unstable(d: Path, config: dict, metrics: dict) -> list[str]:
    """Why run folder ``d``'s stage 2 looks unstable ([] when it does not).

    config.json's ``unstable`` when recorded (the audit has checked it against the log and metrics); a run recorded
    before the flag existed gets the same flags recomputed, so no table ranks an unstable run unmarked.
    """
    if isinstance(config.get("unstable"), list):
        return [str(f) for f in config["unstable"]]
    rows = []
    log = Path(d) / "log.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append(row if isinstance(row, dict) else {})
    return stability_flags(rows, metrics, len(config.get("train_class_counts") or []))


def unstable_bound_text() -> str:
    """The stated bounds, as every footnote words them."""
    return (f"the last stage-2 epoch's training loss above {LOSS_RISE_BOUND:g}x the first's, or test NLL above "
            f"{NLL_BOUND:g} x log C")


def _declared_methods() -> tuple[dict[str, str], dict[str, int]]:
    """Labels and table order as each method declares them (``Method.label`` / ``Method.order``)."""
    from ..registry import get_method, method_names
    return ({m: get_method(m).display() for m in method_names()}, {m: get_method(m).order for m in method_names()})


_LABELS, _ORDERS = _declared_methods()
# the six original methods and the oracle tau-norm row keep plain-ASCII table names (their declared labels may use
# Greek letters: the site shows those); every other method shows its declared label
METHOD_NAMES = {**_LABELS, "ce": "CE", "crt": "cRT", "lws": "LWS", "tau_norm": "tau-norm", "swag": "SWAG",
                "srepr": "SRepr", "tau_norm_oracle": "tau-norm (oracle tau, test set)"}  # plain text, as tau-norm
METHOD_LATEX = {"tau_norm": r"$\tau$-norm", "tau_norm_oracle": r"$\tau$-norm (oracle $\tau$, test set)"}
STAGE1_NAMES = {"sgd": "SGD", "swa": "SWA"}
STAGE1_ORDER = {"sgd": 0, "swa": 1}
METHOD_ORDER = dict(_ORDERS)


def method_variant(config: dict) -> str:
    """'' for a run at its method's default options, else 'name=value,...' for each option it changed.

    Why: a run folder is named by method only, so without this a run with a non-default option (a deviation from
    the reference, e.g. cRT with ``backbone=finetune``) would sit in the reference row and average with it. An
    option missing from an older config.json takes its ``legacy_options`` value (how runs before the option
    behaved); stored values are typed by the method's declaration first, so '"false"' and false are one value.
    """
    from ..options import resolve_options
    from ..registry import get_method
    try:
        cls = get_method(config["method"])
    except LtbenchError:
        return ""
    stored = {k: v for k, v in (config.get("method_options") or {}).items() if k in cls.defaults}
    given = {**{k: v for k, v in cls.legacy_options.items() if k in cls.defaults}, **stored}
    try:
        resolved = resolve_options(cls.option_specs, given, f"method {cls.name!r}")
    except LtbenchError:  # a value today's declaration refuses: compare it as stored
        resolved = {**cls.defaults, **given}
    return variant_text(cls.defaults, resolved)


def variant_text(defaults: dict[str, Any], resolved: dict[str, Any]) -> str:
    """'name=value,...' for each resolved option that differs from its default (in declaration order)."""
    changed = [f"{k}={json.dumps(as_recorded(v), separators=(',', ':')).strip(chr(34))}"
               for k, v in resolved.items() if as_recorded(v) != as_recorded(defaults[k])]
    return ",".join(changed)


def method_key(config: dict) -> str:
    """The table row of a run: its method, plus ``[options]`` when it ran with non-default method options."""
    variant = method_variant(config)
    return f"{config['method']}[{variant}]" if variant else str(config["method"])


def split_method_key(key: str) -> tuple[str, str]:
    """'crt[backbone=finetune]' -> ('crt', 'backbone=finetune'); 'crt' -> ('crt', '')."""
    base, _, rest = key.partition("[")
    return base, rest.removesuffix("]")


def method_label(key: str) -> str:
    """Plain-text table name of a row key: 'cRT', or 'cRT [backbone=finetune]' for a non-default variant."""
    base, variant = split_method_key(key)
    return METHOD_NAMES.get(base, base) + (f" [{variant}]" if variant else "")


def method_latex(key: str) -> str:
    base, variant = split_method_key(key)
    name = METHOD_LATEX.get(base, tex_escape(METHOD_NAMES.get(base, base)))
    return name + (f" [{tex_escape(variant)}]" if variant else "")


def method_rank(key: str) -> tuple[int, str, str]:
    """Sort key: the method's declared order, a variant right after its reference row."""
    base, variant = split_method_key(key)
    return METHOD_ORDER.get(base, 99), base, variant


@dataclass
class Collected:
    """Per-run rows that passed the audit, and the runs left out with the reason why."""
    runs: pd.DataFrame
    excluded: list[tuple[Path, list[str]]] = field(default_factory=list)
    dropped_reduced: list[Path] = field(default_factory=list)


def collect_runs(results: Path | str, datasets: tuple[str, ...] | list[str] | None = None) -> Collected:
    """One row per sound run folder under ``<results>/runs``; ``datasets`` filters on dataset name or tag.

    When a setting has both full-schedule and reduced-schedule seeds, only the full ones are kept (mixing the two
    in one mean would hide the reduction); the reduced ones are listed in ``dropped_reduced``.
    """
    rows, excluded = [], []
    for d in iter_run_dirs(results):
        problems = check_run(d)
        if problems:
            excluded.append((d, problems))
            continue
        run = read_run(d)
        c, m = run["config"], run["metrics"]
        tag = config_dataset_tag(c)  # <dataset>[-if<N>][-subset<K>]: another subset is another setting
        if datasets and c["dataset"] not in datasets and tag not in datasets:
            continue
        row = {"dataset": c["dataset"], "imbalance": c["imbalance"], "dataset_tag": tag,
               "stage1_mode": c["stage1_mode"], "method": method_key(c), "seed": int(c["seed"]),
               "reduced": bool(c["reduced"]), "dir": str(d)}
        for k in [k for k, _, _ in METRICS] + list(EXTRA_METRICS):
            v = m.get(k)
            row[k] = float(v) if v is not None else math.nan
        for k in COST_KEYS:
            v = c.get(k)
            row[k] = float(v) if v is not None else math.nan
        env = c.get("environment") or {}
        row["device_name"] = str(env.get("device_name") or env.get("device") or "")
        why = run_unstable(d, c, m)
        row["unstable"], row["unstable_why"] = bool(why), "; ".join(why)
        row["tau"], row["tau_rule"] = tau_choice(c)
        rows.append(row)
    cols = ["dataset", "imbalance", "dataset_tag", "stage1_mode", "method", "seed", "reduced", "dir"] + \
        [k for k, _, _ in METRICS] + list(EXTRA_METRICS) + list(COST_KEYS) + ["device_name", "unstable",
                                                                              "unstable_why", "tau", "tau_rule"]
    df = pd.DataFrame(rows, columns=cols)
    dropped: list[Path] = []
    if len(df):
        key = ["dataset_tag", "stage1_mode", "method"]
        has_full = df.groupby(key)["reduced"].transform(lambda r: (~r).any())
        drop = df["reduced"] & has_full
        dropped = [Path(p) for p in df.loc[drop, "dir"]]
        df = df.loc[~drop].reset_index(drop=True)
    return Collected(df, excluded, dropped)


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof=1; NaN for one seed) and seed count per (dataset_tag, stage1_mode, method).

    A metric that is missing for some seeds (e.g. no few-shot class) is averaged over the seeds that have it.
    """
    if runs.empty:
        raise LtbenchError("no runs to aggregate")
    out = []
    for (tag, s1, meth), g in runs.groupby(["dataset_tag", "stage1_mode", "method"], sort=False):
        row = {"dataset_tag": tag, "dataset": g["dataset"].iloc[0], "imbalance": g["imbalance"].iloc[0],
               "stage1_mode": s1, "method": meth, "n": len(g), "seeds": ",".join(map(str, sorted(g["seed"]))),
               "reduced": bool(g["reduced"].any())}
        # a mean over seeds is marked when any of its seeds is unstable
        flagged = sorted(g.loc[g["unstable"].astype(bool), "seed"]) if "unstable" in g else []
        row["unstable"], row["unstable_seeds"] = bool(flagged), ",".join(map(str, flagged))
        if "tau_rule" in g:
            row["tau_choices"] = [(float(t), str(r)) for t, r in zip(g["tau"], g["tau_rule"]) if r]
        for k in [k for k, _, _ in METRICS] + list(EXTRA_METRICS):
            v = g[k].to_numpy(dtype=float)
            v = v[~np.isnan(v)]
            row[f"{k}_mean"] = float(v.mean()) if len(v) else math.nan
            row[f"{k}_std"] = float(v.std(ddof=1)) if len(v) >= 2 else math.nan
            row[f"{k}_n"] = len(v)
        if all(k in g for k in COST_KEYS):
            for k in COST_KEYS:
                v = g[k].to_numpy(dtype=float)
                v = v[~np.isnan(v)]
                row[f"{k}_mean"] = float(v.mean()) if len(v) else math.nan
            row["device_name"] = " / ".join(sorted({d for d in g["device_name"] if d})) or "?"
        out.append(row)
    agg = pd.DataFrame(out)
    order = sorted(range(len(agg)), key=lambda i: (agg.dataset_tag[i], STAGE1_ORDER.get(agg.stage1_mode[i], 9),
                                                   method_rank(agg.method[i])))
    return agg.iloc[order].reset_index(drop=True)


def best_mask(agg: pd.DataFrame) -> pd.DataFrame:
    """True where a row's mean is the best of its dataset column (ties all best); NaN is never best."""
    mask = pd.DataFrame(False, index=agg.index, columns=[k for k, _, _ in METRICS])
    for tag, g in agg.groupby("dataset_tag"):
        for k, _, higher in METRICS:
            v = g[f"{k}_mean"]
            if v.notna().any():
                target = v.max() if higher else v.min()
                mask.loc[g.index, k] = np.isclose(v.to_numpy(dtype=float), target, rtol=0, atol=1e-9)
    return mask


def _dataset_label(tag: str) -> str:
    return tag


def _row_order(agg: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = {(s, m) for s, m in zip(agg.stage1_mode, agg.method)}
    return sorted(pairs, key=lambda p: (STAGE1_ORDER.get(p[0], 9), p[0], method_rank(p[1])))


def _num(v: float, key: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.3f}" if key in ("nll", "brier") else f"{v:.2f}"


def cell_text(row: pd.Series, key: str, pm: str = " ± ") -> str:
    """'mean ± std' (std omitted for a single seed), or '-' when the metric is missing."""
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    if math.isnan(mean):
        return "-"
    return _num(mean, key) + (pm + _num(std, key) if not math.isnan(std) else "")


def duration(s: float) -> str:
    """Wall time for a table cell: '0.4 s', '42 s', '17.1 min', '3.2 h'; empty when unknown."""
    if s is None or math.isnan(s):
        return ""
    if s < 0.05:
        return "<0.1 s"
    if s < 10:
        return f"{s:.1f} s"
    if s < 600:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 36000 else f"{s / 3600:.1f} h"


def cost_cells(row: pd.Series) -> list[str]:
    """stage-1 time, stage-2 time (means over seeds) and device of one aggregated setting."""
    return [duration(row.get(f"{k}_mean", math.nan)) for k in COST_KEYS] + [str(row.get("device_name", ""))]


COST_FOOTNOTE = ("stage-1 / stage-2 time: wall time per run, mean over seeds, from config.json; stage 1 is the "
                 "extractor's training, shared by every stage-2 method on the same seed and extractor")


def _footnote(agg: pd.DataFrame) -> str:
    parts = ["mean ± sample std (ddof=1) over n seeds; no std when n = 1",
             "acc/many/medium/few/ECE in %, NLL in nats; best per column in bold (lowest for NLL and ECE)",
             "many/medium/few: >100 / 20-100 / <20 training images per class"]
    if agg["reduced"].any():
        parts.append("† reduced schedule (fewer epochs than the protocol): not comparable to published numbers")
    if "unstable" in agg and agg["unstable"].any():
        parts.append(unstable_footnote(agg))
    tau = tau_footnote(agg)
    if tau:
        parts.append(tau)
    return "; ".join(parts) + "."


def unstable_footnote(agg: pd.DataFrame) -> str:
    """'‡ unstable stage 2 (<bound>) ... in: <setting> (seed(s) ...)': the bound and every affected run."""
    sub = agg[agg["unstable"].astype(bool)]
    where = [f"{r.dataset_tag} {STAGE1_NAMES.get(r.stage1_mode, r.stage1_mode)} + "
             f"{method_label(r.method)} (seed{'s' if ',' in r.unstable_seeds else ''} "
             f"{r.unstable_seeds.replace(',', ', ')})" for r in sub.itertuples()]
    return (f"{UNSTABLE_MARK} unstable stage 2 ({unstable_bound_text()}; the reasons are in each run's config.json, "
            "'unstable'), kept in the mean, in: " + ", ".join(where))


def marks(row: pd.Series) -> str:
    """The seed-count suffix: ' †' for a reduced schedule, ' ‡' for an unstable stage 2 in any seed."""
    return (f" {REDUCED_MARK}" if row["reduced"] else "") + \
        (f" {UNSTABLE_MARK}" if bool(row.get("unstable", False)) else "")


def render_markdown(agg: pd.DataFrame, keep_order: bool = False, cost: bool = False) -> str:
    """A GitHub table: one column group per dataset tag, columns '<tag> acc', ..., '<tag> n'.

    Rows go stage 1 then method, or in the order of ``agg`` with ``keep_order`` (the leaderboard ranks by accuracy).
    ``cost`` adds '<tag> stage-1 time', '<tag> stage-2 time' and '<tag> device' after the seed counts.
    """
    tags = list(dict.fromkeys(agg["dataset_tag"]))
    best = best_mask(agg)
    cost_names = [*COST_NAMES.values(), "device"] if cost else []
    head = ["stage 1", "method"] + [f"{_dataset_label(t)} {name}" for t in tags for _, name, _ in METRICS] + \
        [f"{_dataset_label(t)} n" for t in tags] + [f"{_dataset_label(t)} {c}" for t in tags for c in cost_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    order = list(dict.fromkeys(zip(agg.stage1_mode, agg.method))) if keep_order else _row_order(agg)
    for s1, meth in order:
        cells = [STAGE1_NAMES.get(s1, s1), method_label(meth)]
        ns, costs = [], []
        for t in tags:
            sel = agg[(agg.dataset_tag == t) & (agg.stage1_mode == s1) & (agg.method == meth)]
            if sel.empty:
                cells += [""] * len(METRICS)
                ns.append("")
                costs += [""] * len(cost_names)
                continue
            i, r = sel.index[0], sel.iloc[0]
            for k, _, _ in METRICS:
                txt = cell_text(r, k)
                cells.append(f"**{txt}**" if best.loc[i, k] else txt)
            ns.append(f"{r['n']}" + marks(r))
            if cost:
                costs += [c.replace("|", "/") for c in cost_cells(r)]
        lines.append("| " + " | ".join(cells + ns + costs) + " |")
    foot = _footnote(agg)
    if cost:
        foot = foot[:-1] + "; " + COST_FOOTNOTE + "."
    return "\n".join(lines) + "\n\n" + foot + "\n"


_TEX_ESC = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def tex_escape(s: str) -> str:
    return "".join(_TEX_ESC.get(ch, ch) for ch in str(s))


def render_latex(agg: pd.DataFrame, caption: str = "Long-tailed classification results (ltbench).",
                 label: str = "tab:ltbench", cost: bool = False) -> str:
    """A booktabs table that compiles on its own (``pdflatex table.tex``) and when ``\\input`` into a paper.

    Standalone detection: after ``\\documentclass`` has run, LaTeX lets ``\\documentclass`` to
    ``\\@twoclasseserror``; if it has not, this file supplies its own preamble and ``\\end{document}``.
    A paper that ``\\input``s it needs ``\\usepackage{booktabs}``; with graphicx loaded too, a table wider than
    the text is scaled down to fit. ``cost`` adds stage-1 time, stage-2 time and device to each dataset group.
    """
    tags = list(dict.fromkeys(agg["dataset_tag"]))
    best = best_mask(agg)
    cost_names = ["S1 time", "S2 time", "device"] if cost else []
    ncol = len(METRICS) + 1 + len(cost_names)
    lines = [
        "% Generated by `bench.py table --format latex`; do not edit by hand.",
        "% Compiles standalone (pdflatex this-file.tex) or \\input{} into a paper that loads booktabs",
        "% (and graphicx, to scale a too-wide table to the text width).",
        r"\makeatletter",
        r"\ifx\documentclass\@twoclasseserror\def\ltbenchstandalone{0}\else\def\ltbenchstandalone{1}\fi",
        r"\makeatother",
        r"\if1\ltbenchstandalone\def\ltbenchnext{\documentclass{article}\usepackage[margin=1cm,landscape]{geometry}"
        r"\usepackage{booktabs}\usepackage{graphicx}\begin{document}}\else\let\ltbenchnext\relax\fi\ltbenchnext",
        r"\begin{table}[t]",
        r"\centering\scriptsize\setlength{\tabcolsep}{3pt}",
        r"% shrink to the text width when the paper loads graphicx and the table is wider; else natural size",
        r"\ifdefined\resizebox\def\ltbenchfit#1{\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{#1}}"
        r"\else\def\ltbenchfit#1{#1}\fi",
        r"\ltbenchfit{%",
        r"\begin{tabular}{ll" + "".join("r" * ncol for _ in tags) + "}",
        r"\toprule",
        " & & " + " & ".join(rf"\multicolumn{{{ncol}}}{{c}}{{{tex_escape(_dataset_label(t))}}}" for t in tags)
        + r" \\",
        "".join(rf"\cmidrule(lr){{{3 + j * ncol}-{2 + (j + 1) * ncol}}}" for j in range(len(tags))),
        "Stage 1 & Method & " + " & ".join(" & ".join([n for _, n, _ in METRICS] + ["$n$"] + cost_names)
                                           for _ in tags)
        + r" \\",
        r"\midrule",
    ]
    prev_s1 = None
    for s1, meth in _row_order(agg):
        if prev_s1 is not None and s1 != prev_s1:
            lines.append(r"\midrule")
        prev_s1 = s1
        cells = [tex_escape(STAGE1_NAMES.get(s1, s1)),
                 method_latex(meth)]
        for t in tags:
            sel = agg[(agg.dataset_tag == t) & (agg.stage1_mode == s1) & (agg.method == meth)]
            if sel.empty:
                cells += [""] * ncol
                continue
            i, r = sel.index[0], sel.iloc[0]
            for k, _, _ in METRICS:
                txt = "--" if math.isnan(r[f"{k}_mean"]) else cell_text(r, k, pm=r"\,$\pm$\,")
                cells.append(rf"\textbf{{{txt}}}" if best.loc[i, k] else txt)
            cells.append(f"{r['n']}" + (r"$^\dagger$" if r["reduced"] else "")
                         + (r"$^\ddagger$" if bool(r.get("unstable", False)) else ""))
            if cost:
                cells += [tex_escape(c) for c in cost_cells(r)]
        lines.append(" & ".join(cells) + r" \\")
    foot = _footnote(agg)
    if cost:
        foot = foot[:-1] + "; S1 / S2 time: " + COST_FOOTNOTE.split(": ", 1)[1] + "."
    note = tex_escape(foot).replace("±", r"$\pm$").replace("†", r"$^\dagger$").replace("‡", r"$^\ddagger$")
    lines += [
        r"\bottomrule",
        r"\end{tabular}}",
        rf"\caption{{{tex_escape(caption)} {note}}}",
        rf"\label{{{label}}}",
        r"\end{table}",
        r"\if1\ltbenchstandalone\def\ltbenchnext{\end{document}}\else\let\ltbenchnext\relax\fi\ltbenchnext",
        "",
    ]
    return "\n".join(lines)


def render_csv(agg: pd.DataFrame, cost: bool = False) -> str:
    """Machine-readable: one row per setting with mean, std and count of every metric (no formatting); ``cost``
    adds the mean stage-1 and stage-2 wall times in seconds and the device."""
    cols = ["dataset", "imbalance", "dataset_tag", "stage1_mode", "method", "n", "seeds", "reduced", "unstable",
            "unstable_seeds"]
    for k in [k for k, _, _ in METRICS] + list(EXTRA_METRICS):
        cols += [f"{k}_mean", f"{k}_std", f"{k}_n"]
    if cost:
        cols += [f"{k}_mean" for k in COST_KEYS] + ["device_name"]
    agg = agg.assign(**{c: agg[c] if c in agg else v for c, v in (("unstable", False), ("unstable_seeds", ""))})
    buf = io.StringIO()
    agg[cols].to_csv(buf, index=False, float_format="%.6g")
    return buf.getvalue()


def render(agg: pd.DataFrame, fmt: str, cost: bool = False) -> str:
    """``cost``: add stage-1 / stage-2 wall time (mean over seeds) and the device per setting."""
    if fmt == "latex":
        return render_latex(agg, cost=cost)
    if fmt == "markdown":
        return render_markdown(agg, cost=cost)
    if fmt == "csv":
        return render_csv(agg, cost=cost)
    raise LtbenchError(f"unknown table format {fmt!r}; valid formats: {', '.join(FORMATS)}")


def exclusion_lines(col: Collected) -> list[str]:
    """Warnings for every run kept out of the tables, so nothing is dropped silently."""
    out = [f"warning: excluded {d} (failed audit: {'; '.join(p[:3])}{' ...' if len(p) > 3 else ''})"
           for d, p in col.excluded]
    out += [f"warning: left out reduced-schedule run {d} (full-schedule seeds of the same setting exist)"
            for d in col.dropped_reduced]
    return out


def load_table(results: Path | str, datasets=None) -> tuple[pd.DataFrame, Collected]:
    """Collect and aggregate, with a clear error when nothing usable is there."""
    col = collect_runs(results, datasets)
    if col.runs.empty:
        where = paths.runs_root(results)
        what = f" for dataset(s) {', '.join(datasets)}" if datasets else ""
        bad = f"; {len(col.excluded)} run(s) failed the audit" if col.excluded else ""
        raise LtbenchError(f"no sound runs found under {where}{what}{bad}. Run `bench.py run ...` first "
                           "(or pass --results DIR).")
    return aggregate(col.runs), col
