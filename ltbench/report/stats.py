"""Paired statistics: is the difference between two methods of one setting larger than its noise?

Two sources of noise, two intervals, both on the difference A - B of the same seeds:

* **over seeds** (training noise): the per-seed differences of ``metrics.json`` numbers (seed s of A and of B share
  the stage-1 network when they share the extractor), their mean, sample std, a 95 % Student-t interval and how
  many seeds agree with the mean's sign;
* **over test examples** (test-set noise): a paired bootstrap from ``predictions.npz``. For seed s, replicate b
  draws ``rng.integers(0, N, size=N)`` from ``numpy.random.default_rng([boot_seed, s])`` (one call per replicate,
  in order), the same indices for A and B; replicate b of the difference is the mean over seeds of
  metric(A_s[idx]) - metric(B_s[idx]); the interval is the 2.5 / 97.5 percentiles (``np.percentile``, linear).

Metrics are those of ``ltbench.metrics`` (accuracy, NLL, 15-bin ECE with (l, u] bins); the bootstrap evaluates
them for all replicates at once as count-weighted sums, which equal the metric of the resampled arrays.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import LtbenchError
from ..metrics import ECE_BINS
from ..store import read_run
from .tables import (METHOD_NAMES, REDUCED_MARK, STAGE1_NAMES, STAGE1_ORDER, UNSTABLE_MARK, collect_runs,
                     method_label, method_rank, split_method_key, unstable_bound_text)

SEED_METRICS = ("acc", "acc_many", "acc_medium", "acc_few", "nll", "ece", "brier")  # differences over seeds
BOOT_METRICS = ("acc", "nll", "ece")  # also bootstrapped over test examples
METRIC_LABEL = {"acc": "acc", "acc_many": "many", "acc_medium": "medium", "acc_few": "few", "nll": "NLL",
                "ece": "ECE", "brier": "Brier"}
DEFAULT_REFERENCE = "crt"
DEFAULT_BOOTSTRAP = 1000
DEFAULT_BOOT_SEED = 0
_CHUNK = 250  # bootstrap replicates per matrix product (bounds memory at ~chunk x N doubles)


# --- Student t quantile (no scipy at run time) -------------------------------------------------------------------

def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4, exact finite series)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 1:
        term, total = math.cos(theta), 0.0
        if df > 1:
            total = term
            for k in range(1, (df - 3) // 2 + 1):
                term *= c2 * (2 * k) / (2 * k + 1)
                total += term
        return 2.0 / math.pi * (theta + s * total)
    term, total = 1.0, 1.0
    for k in range(1, (df - 2) // 2 + 1):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom, by bisection."""
    if df < 1:
        raise ValueError("df must be >= 1")
    target = 2 * p - 1
    lo, hi = 0.0, 1.0
    while _t_two_sided_mass(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_two_sided_mass(mid, df) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# --- bootstrap ----------------------------------------------------------------------------------------------------

def _bin_index(confidence: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin of each confidence under ``metrics.reliability_bins``'s (l, u] rule; -1 for a confidence of 0."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges, confidence.astype(np.float64), side="left") - 1


def bootstrap_indices(n: int, replicates: int, seed: int, boot_seed: int = DEFAULT_BOOT_SEED):
    """Yield the resampled index arrays of one seed, one per replicate (the documented stream)."""
    rng = np.random.default_rng([boot_seed, seed])
    for _ in range(replicates):
        yield rng.integers(0, n, size=n)


def bootstrap_metrics(arrays: list[dict[str, np.ndarray]], seed: int, replicates: int = DEFAULT_BOOTSTRAP,
                      boot_seed: int = DEFAULT_BOOT_SEED) -> list[dict[str, np.ndarray]]:
    """Accuracy, NLL and ECE (percent / nats) of every replicate, for runs that share one seed and one test set.

    All runs see the same resampled indices, so differences between the returned arrays are paired.
    """
    n = len(arrays[0]["labels"])
    for a in arrays[1:]:
        if len(a["labels"]) != n or not np.array_equal(a["labels"], arrays[0]["labels"]):
            raise LtbenchError("runs compared by the paired bootstrap must share one test set (labels differ); "
                               "re-run them with the same dataset")
    cols = []  # per run: correct, -log p(true), then per bin (correct - confidence) restricted to the bin
    for a in arrays:
        correct = (a["pred"] == a["labels"]).astype(np.float64)
        conf = a["confidence"].astype(np.float64)
        b = _bin_index(a["confidence"])
        gap = np.zeros((n, ECE_BINS))
        ok = b >= 0
        gap[np.flatnonzero(ok), b[ok]] = (correct - conf)[ok]
        cols.append(np.column_stack([correct, -a["log_prob_true"].astype(np.float64), gap]))
    x = np.hstack(cols)  # [N, runs * (2 + bins)]
    width = 2 + ECE_BINS
    out = np.empty((replicates, x.shape[1]))
    idx_iter = bootstrap_indices(n, replicates, seed, boot_seed)
    for start in range(0, replicates, _CHUNK):
        rows = min(_CHUNK, replicates - start)
        idx = np.stack([next(idx_iter) for _ in range(rows)])
        counts = np.bincount((idx + n * np.arange(rows)[:, None]).ravel(), minlength=rows * n).reshape(rows, n)
        out[start:start + rows] = counts.astype(np.float64) @ x
    res = []
    for r in range(len(arrays)):
        blk = out[:, r * width:(r + 1) * width] / n
        res.append({"acc": 100.0 * blk[:, 0], "nll": blk[:, 1], "ece": 100.0 * np.abs(blk[:, 2:]).sum(axis=1)})
    return res


# --- paired comparisons -------------------------------------------------------------------------------------------

@dataclass
class Comparison:
    """A - B on one setting: per-seed values, seed statistics and (for BOOT_METRICS) the bootstrap interval."""
    dataset_tag: str
    a: str
    b: str
    kind: str  # "reference" (same extractor), "extractor" (swa-X vs sgd-X), "baseline" (SWA-only method vs the
    # reference on SGD), "claim" (claim_tables) or "chosen" (bench.py compare --paired)
    seeds: list[int]
    reduced: bool
    a_values: dict[str, list[float]] = field(default_factory=dict)
    b_values: dict[str, list[float]] = field(default_factory=dict)
    boot: dict[str, tuple[float, float]] = field(default_factory=dict)
    replicates: int = 0
    n_test: int = 0
    unstable: list[str] = field(default_factory=list)  # compared runs with an unstable stage 2: '<name> seed <s>'

    def diffs(self, m: str) -> np.ndarray:
        return np.asarray(self.a_values[m], dtype=float) - np.asarray(self.b_values[m], dtype=float)

    def seed_stats(self, m: str) -> dict[str, float]:
        """mean, std (ddof=1), 95 % t-interval and seeds agreeing with the mean's sign; NaN where undefined."""
        d = self.diffs(m)
        d = d[~np.isnan(d)]
        n = len(d)
        out = {"n": n, "a_mean": float(np.nanmean(self.a_values[m])) if n else math.nan,
               "b_mean": float(np.nanmean(self.b_values[m])) if n else math.nan,
               "mean": float(d.mean()) if n else math.nan, "std": math.nan, "t_lo": math.nan, "t_hi": math.nan,
               "agree": 0}
        if n:
            out["agree"] = int(np.sum(np.sign(d) == np.sign(out["mean"]))) if out["mean"] != 0 else 0
        if n >= 2:
            out["std"] = float(d.std(ddof=1))
            half = t_quantile(0.975, n - 1) * out["std"] / math.sqrt(n)
            out["t_lo"], out["t_hi"] = out["mean"] - half, out["mean"] + half
        return out


def run_label(name: str) -> str:
    s1, _, m = name.partition("-")
    return f"{STAGE1_NAMES.get(s1, s1)} + {method_label(m)}"


def _boot_key(d: str, replicates: int, boot_seed: int) -> tuple:
    return (str(d), replicates, boot_seed)


def _fill_boot_cache(rows: pd.DataFrame, replicates: int, boot_seed: int, cache: dict) -> None:
    """Bootstrap every run in ``rows`` not yet cached, all runs of one seed in one pass (shared indices)."""
    todo = rows[[_boot_key(d, replicates, boot_seed) not in cache for d in rows["dir"]]]
    for seed, g in todo.groupby("seed", sort=True):
        arrays = [read_run(Path(d))["predictions"] for d in g["dir"]]
        for d, res, a in zip(g["dir"], bootstrap_metrics(arrays, int(seed), replicates, boot_seed), arrays):
            cache[_boot_key(d, replicates, boot_seed)] = (res, len(a["labels"]))


def paired(runs: pd.DataFrame, tag: str, a: str, b: str, kind: str = "chosen", replicates: int = DEFAULT_BOOTSTRAP,
           boot_seed: int = DEFAULT_BOOT_SEED, cache: dict | None = None) -> Comparison | None:
    """Compare run names ``a`` and ``b`` (e.g. ``swa-srepr``, ``swa-crt``) on ``tag`` over their common seeds.

    A seed is paired only when both runs have the same schedule (both full or both reduced): while a full-schedule
    grid is being filled in, one extractor's full run must never be set against the other's reduced run."""
    cache = {} if cache is None else cache
    sub = runs[runs.dataset_tag == tag]
    name = sub.stage1_mode + "-" + sub.method
    ra, rb = sub[name == a].set_index("seed"), sub[name == b].set_index("seed")
    seeds = sorted(s for s in set(ra.index) & set(rb.index) if bool(ra.loc[s, "reduced"]) == bool(rb.loc[s, "reduced"]))
    if not seeds:
        return None
    c = Comparison(tag, a, b, kind, seeds, bool(ra.loc[seeds, "reduced"].any() or rb.loc[seeds, "reduced"].any()))
    c.unstable = [f"{n} seed {s}" for n, r in ((a, ra), (b, rb)) for s in seeds
                  if "unstable" in r and bool(r.loc[s, "unstable"])]
    for m in SEED_METRICS:
        c.a_values[m] = [float(ra.loc[s, m]) for s in seeds]
        c.b_values[m] = [float(rb.loc[s, m]) for s in seeds]
    if replicates > 0:
        both = pd.concat([ra.loc[seeds], rb.loc[seeds]]).reset_index()
        _fill_boot_cache(both, replicates, boot_seed, cache)
        reps = {m: np.zeros(replicates) for m in BOOT_METRICS}
        for s in seeds:
            (ba, n_a), (bb, n_b) = (cache[_boot_key(r.loc[s, "dir"], replicates, boot_seed)] for r in (ra, rb))
            if n_a != n_b:
                raise LtbenchError(f"{tag} seed {s}: {a} has {n_a} test examples, {b} {n_b}; a paired bootstrap "
                                   "needs the same test set")
            for m in BOOT_METRICS:
                reps[m] += (ba[m] - bb[m]) / len(seeds)
            c.n_test = n_a
        c.boot = {m: (float(np.percentile(reps[m], 2.5)), float(np.percentile(reps[m], 97.5))) for m in BOOT_METRICS}
        c.replicates = replicates
    return c


def _names(sub: pd.DataFrame) -> list[str]:
    pairs = sorted(set(zip(sub.stage1_mode, sub.method)),
                   key=lambda p: (STAGE1_ORDER.get(p[0], 9), p[0], method_rank(p[1])))
    return [f"{s}-{m}" for s, m in pairs]


def setting_comparisons(runs: pd.DataFrame, tag: str, reference: str = DEFAULT_REFERENCE,
                        replicates: int = DEFAULT_BOOTSTRAP, boot_seed: int = DEFAULT_BOOT_SEED,
                        cache: dict | None = None) -> list[Comparison]:
    """Every method against ``reference`` on the same extractor, then each extractor against the other (swa - sgd),
    then each method that only exists on SWA (SWAG, SRepr) against ``reference`` on SGD (the paper's baseline)."""
    cache = {} if cache is None else cache
    if replicates > 0:
        _fill_boot_cache(runs[runs.dataset_tag == tag], replicates, boot_seed, cache)
    names = _names(runs[runs.dataset_tag == tag])
    out = []
    for n in names:
        s1, _, m = n.partition("-")
        ref = _reference_row(names, s1, reference)
        if ref is not None and split_method_key(m)[0] != reference:
            out.append(paired(runs, tag, n, ref, "reference", replicates, boot_seed, cache))
    for n in names:
        s1, _, m = n.partition("-")
        if s1 == "swa" and f"sgd-{m}" in names:
            out.append(paired(runs, tag, n, f"sgd-{m}", "extractor", replicates, boot_seed, cache))
    base_ref = _reference_row(names, "sgd", reference)
    for n in names:  # a row only on SWA (SWAG, SRepr; any row without an SGD twin) against the reference on SGD
        s1, _, m = n.partition("-")
        if s1 == "swa" and f"sgd-{m}" not in names and base_ref is not None:
            out.append(paired(runs, tag, n, base_ref, "baseline", replicates, boot_seed, cache))
    return [c for c in out if c is not None]


def _reference_row(names: list[str], s1: str, reference: str) -> str | None:
    """The reference method's row on extractor ``s1``: its plain row, else its only variant row (a store of runs
    recorded before an option existed holds e.g. only 'crt[features=cached]'); None when there is none, or several
    variants and no plain row (which one is the reference would be a guess)."""
    if f"{s1}-{reference}" in names:
        return f"{s1}-{reference}"
    rows = [n for n in names if n.partition("-")[0] == s1 and split_method_key(n.partition("-")[2])[0] == reference]
    return rows[0] if len(rows) == 1 else None


def all_comparisons(results: Path | str, reference: str = DEFAULT_REFERENCE, replicates: int = DEFAULT_BOOTSTRAP,
                    boot_seed: int = DEFAULT_BOOT_SEED, datasets=None, runs: pd.DataFrame | None = None
                    ) -> list[Comparison]:
    """Every setting's comparisons; ``runs``: the store's runs when the caller has collected them already."""
    runs = collect_runs(results, datasets).runs if runs is None else runs
    cache: dict = {}
    out = []
    for tag in sorted(runs.dataset_tag.unique()):
        out += setting_comparisons(runs, tag, reference, replicates, boot_seed, cache)
    return out


# --- rendering ----------------------------------------------------------------------------------------------------

def _nd(m: str) -> int:
    return 3 if m in ("nll", "brier") else 2


def fmt(v: float, m: str, signed: bool = False) -> str:
    """The one spelling of a number in every statistics output (findings.md quotes these strings)."""
    if v is None or math.isnan(v):
        return "-"
    s = f"{v:+.{_nd(m)}f}" if signed else f"{v:.{_nd(m)}f}"
    return s.replace("-", "−") if signed else s  # U+2212 for a signed difference, as in prose


def interval(lo: float, hi: float, m: str) -> str:
    if math.isnan(lo):
        return "-"
    return f"[{fmt(lo, m, True)}, {fmt(hi, m, True)}]"


def metrics_present(c: Comparison) -> list[str]:
    """SEED_METRICS that both runs report on at least one seed (CIFAR-10-LT has no few-shot class)."""
    return [m for m in SEED_METRICS if c.seed_stats(m)["n"] > 0]


def seed_interval_excludes_zero(st: dict[str, float]) -> bool:
    """Whether ``Comparison.seed_stats``'s t-interval exists (two seeds or more) and excludes zero."""
    return not math.isnan(st["t_lo"]) and (st["t_lo"] > 0 or st["t_hi"] < 0)


def row_cells(c: Comparison, m: str) -> dict[str, str]:
    st = c.seed_stats(m)
    lo, hi = c.boot.get(m, (math.nan, math.nan))
    seeds_real = seed_interval_excludes_zero(st)
    test_real = not math.isnan(lo) and (lo > 0 or hi < 0)
    return {"A": fmt(st["a_mean"], m), "B": fmt(st["b_mean"], m),
            "diff": fmt(st["mean"], m, True) + ("" if math.isnan(st["std"]) else f" ± {fmt(st['std'], m)}"),
            "t95": interval(st["t_lo"], st["t_hi"], m), "agree": f"{st['agree']}/{st['n']}",
            "boot95": interval(lo, hi, m) if m in c.boot else "",
            "excl": ("seeds" if seeds_real else "") + (" + " if seeds_real and test_real else "")
            + ("test set" if test_real else "") if (m in c.boot or st["n"] >= 2) else ""}


# The paper's two claims, read in every setting (Nam et al.: an SWA extractor beats an SGD one; SRepr beats cRT)
CLAIM_METHODS = ("ce", "crt", "lws", "tau_norm")  # the decoupled methods run on both extractors
# (A extractor, A method, B extractor, B method, metric) of each column of the SRepr claim, always against cRT
SREPR_CLAIM = (("swa", "srepr", "swa", "crt", "acc"), ("swa", "srepr", "swa", "crt", "nll"),
               ("swa", "srepr", "swa", "crt", "ece"), ("swa", "srepr", "sgd", "crt", "acc"))
VARIANT_MARK = "§"  # as in the compare table: a row run with other options than the default
REDUCED_NOTE = f"{REDUCED_MARK} reduced schedule: the runs are comparable to each other, not to published numbers."
CLAIMS_NOTE = ("Each cell: A − B, the mean ± std of the per-seed differences, the 95% t-interval over the seeds and "
               "the seeds agreeing with the mean's sign (n = seeds paired; with one seed, the difference and 1/1); "
               "bold where the seed interval excludes zero. Accuracy and ECE in points, NLL in nats: a negative NLL "
               "or ECE difference is the better calibrated A. SWA − SGD pairs the same method with the same options; "
               "SRepr is set against cRT whatever reference the other tables use.")


@dataclass
class ClaimTable:
    """One of the paper's claims read in every setting that has its pairs: rows of (setting, a comparison or None
    per column)."""
    name: str  # short, for the footnotes
    title: str
    columns: list[str]
    metrics: list[str]  # the metric of each column
    rows: list[tuple[str, list[Comparison | None]]]


def claim_tables(runs: pd.DataFrame) -> list[ClaimTable]:
    """The paper's two claims (SWA vs SGD extractor per method; SRepr vs cRT), only the settings having a pair.

    Paired here from the runs, with seed statistics only (no bootstrap), so the tables do not depend on the
    reference or the bootstrap of stats.md; a method's row is its plain row, else its only variant (as for the
    reference: a store recorded before an option existed holds e.g. only ``crt[features=cached]``)."""
    ext, srepr = [], []
    for tag in sorted(runs.dataset_tag.unique()):
        names = _names(runs[runs.dataset_tag == tag])

        def pair(s1a: str, ma: str, s1b: str, mb: str, same_key: bool = False) -> Comparison | None:
            a, b = _reference_row(names, s1a, ma), _reference_row(names, s1b, mb)
            if not (a and b) or (same_key and a.partition("-")[2] != b.partition("-")[2]):
                return None  # the extractor effect only between the same method with the same options
            return paired(runs, tag, a, b, "claim", replicates=0)
        ext.append((tag, [pair("swa", m, "sgd", m, same_key=True) for m in CLAIM_METHODS]))
        srepr.append((tag, [pair(*col[:4]) for col in SREPR_CLAIM]))
    tables = [ClaimTable("SWA − SGD", "SWA extractor − SGD extractor, accuracy (points), per method",
                         [METHOD_NAMES.get(m, m) for m in CLAIM_METHODS], ["acc"] * len(CLAIM_METHODS), ext),
              ClaimTable("SRepr − cRT",
                         "SWA + SRepr − SWA + cRT (accuracy, NLL, ECE), and − SGD + cRT (accuracy)",
                         ["acc", "NLL", "ECE", "acc vs SGD + cRT"], [col[4] for col in SREPR_CLAIM], srepr)]
    for t in tables:
        t.rows = [(tag, cs) for tag, cs in t.rows if any(c is not None for c in cs)]
    return [t for t in tables if t.rows]


def _is_variant(c: Comparison) -> bool:
    return any("[" in n for n in (c.a, c.b))


def claim_cell(c: Comparison | None, m: str) -> tuple[str, bool]:
    """('Δ mean ± std [seed interval] agree/n' with its marks, whether the seed interval excludes zero); ('', False)
    without the pair. Marks: † reduced schedule, ‡ an unstable stage 2 in a compared run, § a row of non-default
    options."""
    st = c.seed_stats(m) if c is not None else {"n": 0}
    if st["n"] == 0:
        return "", False
    r = row_cells(c, m)
    text = " ".join(x for x in (r["diff"], "" if r["t95"] == "-" else r["t95"], r["agree"]) if x)
    text += (f" {REDUCED_MARK}" if c.reduced else "") + (f" {UNSTABLE_MARK}" if c.unstable else "") + (
        f" {VARIANT_MARK}" if _is_variant(c) else "")
    return text, seed_interval_excludes_zero(st)


def claims_footnotes(tables: list[ClaimTable]) -> list[str]:
    """The notes the marks of the claims cells need: each variant pair named, the reduced and unstable notes."""
    out = []
    for t in tables:
        var = dict.fromkeys(f"{tag} {run_label(c.a)} − {run_label(c.b)}" for tag, cs in t.rows
                            for c in cs if c is not None and _is_variant(c))
        if var:
            out.append(f"{VARIANT_MARK} {t.name}, pairs with a row of non-default options: " + "; ".join(var) + ".")
    shown = [c for t in tables for _, cs in t.rows for c in cs if c is not None]
    return (out + ([REDUCED_NOTE] if any(c.reduced for c in shown) else [])
            + ([unstable_note(shown)] if any(c.unstable for c in shown) else []))


def render_claims(tables: list[ClaimTable], more: str = "Each setting's section below gives every comparison and "
                  "metric.") -> list[str]:
    """Markdown lines of the claims tables (none without a table); ``more`` says where the rest of the statistics
    are."""
    if not tables:
        return []
    lines = ["## The paper's claims, setting by setting", "", CLAIMS_NOTE.replace("bold", "**bold**") + " " + more, ""]
    for t in tables:
        lines += [f"**{t.title}**", "", "| setting | " + " | ".join(t.columns) + " |",
                  "|---|" + "---:|" * len(t.columns)]
        for tag, cs in t.rows:
            cells = [claim_cell(c, m) for c, m in zip(cs, t.metrics)]
            lines.append("| " + " | ".join([tag] + [f"**{x}**" if bold else x for x, bold in cells]) + " |")
        lines.append("")
    return lines + [x for f in claims_footnotes(tables) for x in (f, "")]


HEAD = ["comparison (A − B)", "metric", "A", "B", "Δ mean ± std", "95% t-interval (seeds)", "seeds agreeing",
        "95% bootstrap (test examples)", "interval excludes 0"]


def unstable_note(comps: list[Comparison]) -> str:
    """'‡ unstable stage 2 (<bound>) in the runs: ...', naming each flagged run and seed once."""
    flagged = list(dict.fromkeys(f"{run_label(u.split(' seed ')[0])} seed {u.split(' seed ')[1]}"
                                 for c in comps for u in c.unstable))
    return (f"{UNSTABLE_MARK} unstable stage 2 ({unstable_bound_text()}) in: {', '.join(flagged)}; a comparison "
            "involving them is marked and says little.")


def render_markdown(comps: list[Comparison], reference: str = DEFAULT_REFERENCE, results: str = "results",
                    claims: list[ClaimTable] | None = None) -> str:
    """``results``: the store as the generating command named it (shown in the header); ``claims``: the tables of
    the paper's claims that open the file (``claim_tables`` of the same runs)."""
    reps = max((c.replicates for c in comps), default=0)
    lines = ["# Paired statistics", "",
             f"Generated by `python bench.py stats --results {results}` (also written by `bench.py site --results "
             f"{results}`) from the run folders under `{results}/runs/`; do not edit by hand.", "",
             f"A − B over the seeds both have (seed s of A against seed s of B). **Δ mean ± std**: mean and sample "
             f"std of the per-seed differences; **95% t-interval**: mean ± t(0.975, n−1)·std/√n, the noise of "
             f"training over seeds; **seeds agreeing**: seeds whose difference has the mean's sign; **95% bootstrap**: "
             f"paired bootstrap over the test examples ({reps} resamples per seed, the same indices for A and B, "
             f"replicate = mean over seeds; 2.5/97.5 percentiles), the noise of the finite test set, for accuracy, "
             f"NLL and ECE. **interval excludes 0** names the intervals that exclude zero: a difference is real "
             f"when the seed interval excludes it (with 3 seeds that takes a consistent gap). Accuracies and ECE "
             f"in percentage points, NLL and Brier in nats; a metric that no run of the setting has (few-shot on "
             f"CIFAR-10-LT) is left out. Comparisons: every method against "
             f"{METHOD_NAMES.get(reference, reference)} on the same extractor, SWA against SGD per method, and each "
             f"method that needs the SWA extractor against SGD + {METHOD_NAMES.get(reference, reference)}.", ""]
    lines += render_claims(claims or [])
    for tag in dict.fromkeys(c.dataset_tag for c in comps):
        sub = [c for c in comps if c.dataset_tag == tag]
        red = any(c.reduced for c in sub)
        lines += [f"## {tag}", ""]
        if red:
            lines += [REDUCED_NOTE, ""]
        if any(c.unstable for c in sub):
            lines += [unstable_note(sub), ""]
        lines += ["| " + " | ".join(HEAD) + " |", "|---|---|" + "---:|" * (len(HEAD) - 2)]
        for c in sub:
            for m in metrics_present(c):
                r = row_cells(c, m)
                mark = f" {UNSTABLE_MARK}" if c.unstable else ""
                lines.append("| " + " | ".join([f"{run_label(c.a)} − {run_label(c.b)}{mark}", METRIC_LABEL[m], r["A"],
                                                 r["B"], r["diff"], r["t95"], r["agree"], r["boot95"], r["excl"]])
                             + " |")
        lines.append("")
    if not comps:
        lines += ["**No pair of runs to compare yet.**", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_csv(comps: list[Comparison]) -> str:
    rows = []
    for c in comps:
        for m in metrics_present(c):
            st = c.seed_stats(m)
            lo, hi = c.boot.get(m, (math.nan, math.nan))
            rows.append({"dataset_tag": c.dataset_tag, "a": c.a, "b": c.b, "kind": c.kind, "metric": m,
                         "seeds": ",".join(map(str, c.seeds)), "reduced": c.reduced, "n": st["n"],
                         "a_mean": st["a_mean"], "b_mean": st["b_mean"], "diff_mean": st["mean"],
                         "diff_std": st["std"], "t95_lo": st["t_lo"], "t95_hi": st["t_hi"],
                         "seeds_agreeing": st["agree"], "boot95_lo": lo, "boot95_hi": hi,
                         "boot_replicates": c.replicates if m in c.boot else 0,
                         "unstable": ",".join(c.unstable)})
    buf = io.StringIO()
    pd.DataFrame(rows, columns=["dataset_tag", "a", "b", "kind", "metric", "seeds", "reduced", "n", "a_mean",
                                "b_mean", "diff_mean", "diff_std", "t95_lo", "t95_hi", "seeds_agreeing",
                                "boot95_lo", "boot95_hi", "boot_replicates", "unstable"]).to_csv(buf, index=False,
                                                                                      float_format="%.6g")
    return buf.getvalue()


def render_text(c: Comparison) -> str:
    """One comparison for the terminal (``bench.py compare --paired A B``)."""
    head = ["metric", "A", "B", "Δ mean ± std", "95% t (seeds)", "agree", "95% bootstrap", "excludes 0"]
    rows = []
    for m in metrics_present(c):
        r = row_cells(c, m)
        rows.append([METRIC_LABEL[m], r["A"], r["B"], r["diff"], r["t95"], r["agree"], r["boot95"], r["excl"]])
    w = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    title = (f"{c.dataset_tag}: A = {run_label(c.a)} ({c.a}), B = {run_label(c.b)} ({c.b}); paired over seeds "
             f"{', '.join(map(str, c.seeds))} (n = {len(c.seeds)})" + (" † reduced schedule" if c.reduced else "")
             + (f" {UNSTABLE_MARK} unstable stage 2" if c.unstable else ""))
    out = [title] + ["  ".join(x.ljust(w[i]) if i == 0 else x.rjust(w[i]) for i, x in enumerate(r))
                     for r in [head] + rows]
    if c.replicates:
        out.append(f"bootstrap: {c.replicates} paired resamples of the {c.n_test} test examples per seed")
    if c.unstable:
        out.append(unstable_note([c]))
    return "\n".join(out) + "\n"


def _shown(results: Path) -> str:
    """The store as a reader of the generated file should see it (as the leaderboard names it)."""
    from .leaderboard import shown_path
    return shown_path(results)


def write_stats(results: Path | str, reference: str = DEFAULT_REFERENCE, replicates: int = DEFAULT_BOOTSTRAP,
                boot_seed: int = DEFAULT_BOOT_SEED, comps: list[Comparison] | None = None,
                runs: pd.DataFrame | None = None) -> list[Path]:
    """Write ``<results>/stats.md`` and ``<results>/stats.csv``; return their paths. ``comps`` and ``runs``: what
    the caller already computed of this store (the site), so both files read the same runs."""
    from ..checkpoint import atomic_write_bytes

    results = Path(results)
    runs = collect_runs(results).runs if runs is None else runs
    if comps is None:
        comps = all_comparisons(results, reference, replicates, boot_seed, runs=runs)
    paths = [results / "stats.md", results / "stats.csv"]
    claims = claim_tables(runs) if not runs.empty else []
    atomic_write_bytes(paths[0], render_markdown(comps, reference, _shown(results), claims).encode())
    atomic_write_bytes(paths[1], render_csv(comps).encode())
    return paths
