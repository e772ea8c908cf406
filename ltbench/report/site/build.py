"""Write the static leaderboard site: plain HTML + one CSS + one small script, from the run store.

Layout under the output folder (default ``<results>/site``)::

    index.html                    every setting, with its best run and links
    <tag>/index.html              sortable results table, published baselines beside it, the report figures
    <tag>/stats.html              paired statistics (seeds and bootstrap), from ``ltbench.report.stats``
    <tag>/<stage1>-<method>.html  resolved config, per-epoch curves (inline SVG), reliability diagrams, run files
    assets/site.css, assets/site.js

Figures and reliability diagrams are not copied: pages link them relatively (``results/plots``, the run folders),
which keeps the committed site small and works from disk (file://) and on a static host that serves ``results/``.
Output is a pure function of the run store: no timestamps, sorted iteration, fixed number formats, so a
regenerated site is byte-identical and a test can catch a stale one.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from html import escape
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ...checkpoint import atomic_write_bytes
from ... import paths
from ...errors import LtbenchError
from ..baselines import canonical_dataset, load_baselines
from ..stats import (CLAIMS_NOTE, DEFAULT_BOOT_SEED, DEFAULT_BOOTSTRAP, DEFAULT_REFERENCE, METRIC_LABEL, Comparison,
                     all_comparisons, claim_cell, claim_tables, claims_footnotes, metrics_present, row_cells,
                     run_label, seed_interval_excludes_zero, write_stats)
from ..leaderboard import shown_path
from ..tables import (METRICS, UNSTABLE_MARK, aggregate, collect_runs, exclusion_lines, method_label,
                      tau_footnote, unstable_bound_text)
from .assets import CSS, JS
from .svg import line_chart

SITE_SUFFIXES = {".html", ".css", ".js"}  # what a rebuild may delete when it no longer writes it
FIGURES = (("reliability", "Reliability per method (seeds pooled)"),
           ("reliability-overlay", "Reliability, overlaid"),
           ("per-class", "Per-class accuracy vs. training-class frequency"),
           ("acc-vs-ece", "Accuracy vs. ECE"))
# (key in runs/agg, header, higher is better)
COLUMNS = [(k, name, hi) for k, name, hi in METRICS] + [("brier", "Brier", False)]
RUN_FILES = ("config.json", "metrics.json", "log.jsonl", "predictions.npz", "reliability.png")


def _rel(target: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(target.resolve(), page_dir.resolve())).as_posix()


def _num(v, nd: int = 2) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _nd(key: str) -> int:
    return 3 if key in ("nll", "brier") else 2


def _unstable_tag(why: str = "") -> str:
    title = f' title="{escape(why)}"' if why else ""
    return f'<span class="tag unstable"{title}>{UNSTABLE_MARK} unstable stage 2</span>'


def _dv(v) -> str:
    """Sort key written into data-v: full precision, empty for a missing value."""
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def _duration(s: float) -> str:
    if s is None or math.isnan(s):
        return "-"
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


class Page:
    """One HTML file: the shared header, a title and a body; links are made relative to its folder."""

    def __init__(self, site: "Site", path: Path, title: str, current: str | None = None):
        self.site, self.path, self.title, self.current = site, path, title, current
        self.parts: list[str] = []

    def rel(self, target: Path) -> str:
        return escape(_rel(target, self.path.parent))

    def add(self, *html: str) -> None:
        self.parts.extend(html)

    def render(self) -> str:
        nav = [f'<a class="home" href="{self.rel(self.site.out / "index.html")}">ltbench leaderboard</a>']
        for tag in self.site.tags:
            cur = ' aria-current="page"' if tag == self.current else ""
            nav.append(f'<a href="{self.rel(self.site.out / tag / "index.html")}"{cur}>{escape(tag)}</a>')
        return "\n".join([
            "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(self.title)}</title>",
            f'<link rel="stylesheet" href="{self.rel(self.site.out / "assets" / "site.css")}">', "</head>", "<body>",
            '<header class="top">' + " ".join(nav) + "</header>", "<main>", *self.parts, "</main>",
            f'<script src="{self.rel(self.site.out / "assets" / "site.js")}"></script>', "</body>", "</html>", ""])


class Site:
    def __init__(self, results: Path, out: Path, runs: pd.DataFrame, agg: pd.DataFrame, base: pd.DataFrame | None,
                 comps: list[Comparison], reference: str, excluded: list[str]):
        self.results, self.out, self.runs, self.agg, self.base = results, out, runs, agg, base
        self.comps, self.reference, self.excluded = comps, reference, excluded
        self.tags = list(dict.fromkeys(agg.dataset_tag))
        self.configs = {d: json.loads((Path(d) / "config.json").read_text()) for d in runs["dir"]}
        self.written: list[Path] = []
        self.stats_written = False  # link results/stats.md only when it holds this build's numbers

    # --- helpers --------------------------------------------------------------------------------------------------
    def write(self, path: Path, text: str) -> None:
        atomic_write_bytes(path, text.encode())
        self.written.append(path)

    def runs_of(self, tag: str, s1: str, method: str) -> pd.DataFrame:
        r = self.runs
        return r[(r.dataset_tag == tag) & (r.stage1_mode == s1) & (r.method == method)].sort_values("seed")

    def cost(self, dirs) -> tuple[float, float]:
        """Mean stage-1 training and stage-2 wall time (s) over the seeds, from config.json."""
        s1 = [self.configs[d].get("stage1_train_time_s") for d in dirs]
        s2 = [self.configs[d].get("stage2_time_s") for d in dirs]
        mean = (lambda v: float(np.mean([x for x in v if x is not None])) if any(x is not None for x in v)
                else math.nan)
        return mean(s1), mean(s2)

    def schedule(self, dirs) -> tuple[str, bool]:
        c = self.configs[list(dirs)[0]]
        reduced = any(self.configs[d].get("reduced") for d in dirs)
        s1 = c.get("stage1") or {}
        ep = f"{s1.get('epochs')}/{s1.get('protocol_epochs')} ep" if s1.get("epochs") is not None else ""
        return ep, reduced

    def unstable(self, dirs) -> list[tuple[int, str]]:
        """(seed, why) of every run among ``dirs`` whose stage 2 is flagged unstable (see tables.run_unstable)."""
        r = self.runs.set_index("dir")
        return [(int(r.loc[d, "seed"]), str(r.loc[d, "unstable_why"])) for d in dirs if bool(r.loc[d, "unstable"])]

    def unstable_note(self, dirs) -> str:
        """A note naming the bound and each flagged seed with its reason; empty when none is flagged."""
        r = self.runs.set_index("dir")
        bad = [(run_label(f"{r.loc[d, 'stage1_mode']}-{r.loc[d, 'method']}"), int(r.loc[d, "seed"]),
                str(r.loc[d, "unstable_why"])) for d in dirs if bool(r.loc[d, "unstable"])]
        if not bad:
            return ""
        return (f'<p class="note">{_unstable_tag()}: {escape(unstable_bound_text())}; the mean includes these '
                "runs: " + "; ".join(f"{escape(n)} seed {s}: {escape(w)}" for n, s, w in bad) + ".</p>")

    def page_name(self, s1: str, method: str) -> str:
        # a variant row key ('crt[backbone=finetune]') becomes a plain file name, with a short hash of the key so
        # that two keys never share one ('a_b=c' and 'a=b_c')
        name = f"{s1}-{method}"
        plain = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
        return (plain if plain == name else f"{plain}-{hashlib.sha1(name.encode()).hexdigest()[:6]}") + ".html"

    # --- pages ----------------------------------------------------------------------------------------------------
    def build(self) -> list[Path]:
        self.write(self.out / "assets" / "site.css", CSS)
        self.write(self.out / "assets" / "site.js", JS)
        self.index_page()
        for tag in self.tags:
            self.setting_page(tag)
            self.stats_page(tag)
            sub = self.agg[self.agg.dataset_tag == tag]
            for s1, m in zip(sub.stage1_mode, sub.method):
                self.method_page(tag, s1, m)
        return self.written

    def index_page(self) -> None:
        p = Page(self, self.out / "index.html", "ltbench leaderboard")
        r = self.results
        also = []
        if (r / "README.md").is_file():
            also.append(f'the markdown leaderboard (<a href="{p.rel(r / "README.md")}">README.md</a>)')
        if self.stats_written:
            also.append(f'<a href="{p.rel(r / "stats.md")}">paired statistics</a>'
                        + (f' (<a href="{p.rel(r / "stats.csv")}">CSV</a>)' if (r / "stats.csv").is_file() else ""))
        where = escape(shown_path(r))
        p.add("<h1>ltbench leaderboard</h1>",
              f'<p>{len(self.runs)} runs: {len(self.tags)} datasets, {len(self.agg)} (dataset, extractor, method) '
              f'combinations, generated by <code>bench.py site --results {where}</code> from '
              f'the run folders under <a href="{p.rel(paths.runs_root(r))}">{where}/runs/</a>.'
              + (f" Also: {', '.join(also)}." if also else "") + "</p>")
        if (r / "tables" / "results.csv").is_file():
            p.add(f'<p class="note">Every mean and std: <a href="{p.rel(r / "tables" / "results.csv")}">'
                  "tables/results.csv</a>.</p>")
        p.add('<div class="cards">')
        for tag in self.tags:
            sub = self.agg[self.agg.dataset_tag == tag].sort_values("acc_mean", ascending=False, kind="stable")
            top = sub.iloc[0]
            seeds = sorted({int(s) for x in sub.seeds for s in str(x).split(",")})
            red = bool(sub.reduced.any())
            p.add(f'<div class="card"><h2><a href="{p.rel(self.out / tag / "index.html")}">{escape(tag)}</a></h2>',
                  f"<p>{len(sub)} methods, seeds {', '.join(map(str, seeds))} "
                  + (' <span class="tag">reduced schedule</span>' if red else ' <span class="tag full">full</span>')
                  + (" " + _unstable_tag() if bool(sub.unstable.any()) else "") + "</p>",
                  f"<p>Most accurate: <b>{escape(run_label(top.stage1_mode + '-' + top.method))}</b> "
                  f"{_num(top.acc_mean)} % (n = {top.n}){self._versus_reference(tag, top)}. Lowest ECE: "
                  + self._best_text(sub, "ece") + "</p>",
                  f'<p><a href="{p.rel(self.out / tag / "stats.html")}">Which differences are real?</a></p></div>')
        p.add("</div>")
        self.claims_section(p)
        if self.excluded:
            p.add("<h2>Runs left out</h2>", "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in self.excluded)
                  + "</ul>")
        p.add('<p class="note">Static pages: nothing is fetched from the network. Figures and reliability diagrams '
              f"are linked from <code>{where}/plots/</code> and the run folders.</p>")
        self.write(p.path, p.render())

    def claims_section(self, p: Page) -> None:
        """The paper's two claims, one row per setting (the same cells as the top of stats.md)."""
        tables = claim_tables(self.runs)
        if not tables:
            return
        p.add("<h2>The paper's claims, setting by setting</h2>",
              f'<p class="note">{escape(CLAIMS_NOTE)} Each setting links to its statistics page.</p>')
        for t in tables:
            head = '<th class="l">setting</th>' + "".join(f"<th>{escape(x)}</th>" for x in t.columns)
            rows = []
            for tag, cs in t.rows:
                cells = [claim_cell(c, m) for c, m in zip(cs, t.metrics)]
                rows.append(f'<tr><td class="l"><a href="{p.rel(self.out / tag / "stats.html")}">{escape(tag)}</a>'
                            "</td>" + "".join(f"<td><b>{escape(x)}</b></td>" if bold else f"<td>{escape(x)}</td>"
                                              for x, bold in cells) + "</tr>")
            p.add(f"<h3>{escape(t.title)}</h3>", f'<div class="scroll"><table class="claims"><thead><tr>{head}'
                  "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>")
        for f in claims_footnotes(tables):
            p.add(f'<p class="note">{escape(f)}</p>')

    def _versus_reference(self, tag: str, top: pd.Series) -> str:
        """How far the most accurate run is from the reference, and whether the seeds say that gap is real."""
        name = f"{top.stage1_mode}-{top.method}"
        c = next((c for c in self.comps if c.dataset_tag == tag and c.a == name and c.kind == "reference"), None)
        if c is None:
            return ""
        st = c.seed_stats("acc")
        if math.isnan(st["t_lo"]):
            return ""
        real = seed_interval_excludes_zero(st)
        cell = row_cells(c, "acc")
        return (f"; against {escape(run_label(c.b))} {escape(cell['diff'])}, seed interval {cell['t95']}: "
                + ("a real gap" if real else "<b>not</b> distinguishable"))

    def _best_text(self, sub: pd.DataFrame, key: str) -> str:
        s = sub.dropna(subset=[f"{key}_mean"]).sort_values(f"{key}_mean", kind="stable")
        if s.empty:
            return "-"
        r = s.iloc[0]
        return f"<b>{escape(run_label(r.stage1_mode + '-' + r.method))}</b> {_num(r[f'{key}_mean'], _nd(key))} %"

    def _cell(self, row: pd.Series, key: str, best: bool) -> str:
        mean, std = row[f"{key}_mean"], row[f"{key}_std"]
        nd = _nd(key)
        txt = "-" if math.isnan(mean) else _num(mean, nd) + ("" if math.isnan(std) else f" ± {_num(std, nd)}")
        cls = ' class="best"' if best else ""
        return f'<td data-v="{_dv(mean)}"{cls}>{txt}</td>'

    def setting_page(self, tag: str) -> None:
        d = self.out / tag
        p = Page(self, d / "index.html", f"{tag} - ltbench leaderboard", current=tag)
        sub = self.agg[self.agg.dataset_tag == tag].sort_values("acc_mean", ascending=False, kind="stable")
        red = bool(sub.reduced.any())
        p.add(f"<h1>{escape(tag)}</h1>",
              f"<p>{int(sub.n.sum())} runs, {len(sub)} methods. Rows ranked by accuracy; click a column header to "
              f'sort. <a href="stats.html">Paired statistics</a>: which of these differences are larger than the '
              "noise of seeds and of the test set.</p>")
        if red:
            p.add('<p class="note"><span class="tag">reduced</span> = fewer stage-1 epochs than the protocol: '
                  "comparable with each other, not with the published numbers on this page.</p>")
        head = ['<th class="l" data-sort="text">stage 1</th>', '<th class="l" data-sort="text">method</th>']
        for k, name, hi in COLUMNS:
            unit = " (nats)" if k in ("nll", "brier") else " (%)"
            head.append(f'<th data-sort="num" data-first="{"descending" if hi else "ascending"}" data-key="{k}">'
                        f"{escape(name)}{unit}</th>")
        head += ['<th data-sort="num" data-first="descending">seeds</th>',
                 '<th class="l" data-sort="text">schedule</th>',
                 '<th data-sort="num" data-first="ascending">stage-1 train</th>',
                 '<th data-sort="num" data-first="ascending">stage-2</th>']
        rows = []
        for _, r in sub.iterrows():
            dirs = list(self.runs_of(tag, r.stage1_mode, r.method)["dir"])
            c1, c2 = self.cost(dirs)
            ep, reduced = self.schedule(dirs)
            cells = [f'<td class="l">{escape(r.stage1_mode.upper())}</td>',
                     f'<td class="l"><a href="{self.page_name(r.stage1_mode, r.method)}">'
                     f"{escape(run_label(r.stage1_mode + '-' + r.method).split(' + ', 1)[1])}</a></td>"]
            for k, _, hi in COLUMNS:
                vals = sub[f"{k}_mean"].dropna()
                best = not math.isnan(r[f"{k}_mean"]) and len(vals) and np.isclose(
                    r[f"{k}_mean"], vals.max() if hi else vals.min(), rtol=0, atol=1e-9)
                cells.append(self._cell(r, k, bool(best)))
            flag = '<span class="tag">reduced</span>' if reduced else '<span class="tag full">full</span>'
            bad = self.unstable(dirs)
            if bad:
                flag += " " + _unstable_tag("; ".join(f"seed {s}: {w}" for s, w in bad))
            mark = f" {UNSTABLE_MARK}" if bad else ""
            cells += [f'<td data-v="{r.n}" title="seeds {escape(str(r.seeds))}">{r.n}{mark}</td>',
                      f'<td class="l">{flag} {escape(ep)}</td>',
                      f'<td data-v="{_dv(c1)}">{_duration(c1)}</td>', f'<td data-v="{_dv(c2)}">{_duration(c2)}</td>']
            rows.append(f'<tr data-run="{escape(r.stage1_mode)}-{escape(r.method)}">' + "".join(cells) + "</tr>")
        table = ('<div class="scroll"><table class="sortable" id="results"><thead><tr>' + "".join(head)
                 + "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>")
        note = ('<p class="note">mean ± sample std (ddof=1) over the seeds; best per column highlighted (lowest for '
                "NLL, ECE, Brier). many / medium / few: &gt;100 / 20-100 / &lt;20 training images per class. Cost: "
                "mean wall time of stage-1 training (the extractor, shared by every method on it) and of stage 2, "
                "from each run's config.json.</p>")
        tau = tau_footnote(sub)  # the same words as the tables: how each tau-norm row's tau was chosen
        if tau:
            note += f'<p class="note">{escape(tau)}.</p>'
        note += self.unstable_note([d for g in sub.itertuples()
                                    for d in self.runs_of(tag, g.stage1_mode, g.method)["dir"]])
        p.add('<div class="pair">', '<section><h2>Our runs</h2>', table, note, "</section>",
              '<section class="narrow"><h2>Published numbers</h2>', self._baselines_html(sub.iloc[0]), "</section>",
              "</div>")
        p.add("<h2>Figures</h2>", '<div class="figs grid">')
        for stem, caption in FIGURES:
            f = self.results / "plots" / f"{tag}-{stem}.png"
            if f.is_file():
                p.add(f'<figure><a href="{p.rel(f)}"><img src="{p.rel(f)}" alt="{escape(caption)}" loading="lazy">'
                      f"</a><figcaption>{escape(caption)} (<a href=\"{p.rel(f.with_suffix('.pdf'))}\">PDF</a>)"
                      "</figcaption></figure>" if f.with_suffix(".pdf").is_file() else
                      f'<figure><img src="{p.rel(f)}" alt="{escape(caption)}" loading="lazy">'
                      f"<figcaption>{escape(caption)}</figcaption></figure>")
            else:
                p.add(f'<p class="note">{escape(caption)}: not generated yet (run <code>bench.py leaderboard</code> '
                      "or <code>bench.py plot</code>, then this again).</p>")
        p.add("</div>")
        self.write(p.path, p.render())

    def _baselines_html(self, r: pd.Series) -> str:
        if self.base is None:
            return '<p class="note">No baselines file.</p>'
        ds = canonical_dataset(r.dataset)
        imb = r.imbalance
        b = self.base[(self.base.dataset == ds) & self.base.imbalance.map(
            lambda x: x is not None and not (isinstance(x, float) and math.isnan(x)) and imb is not None
            and not (isinstance(imb, float) and math.isnan(imb)) and int(x) == int(imb))]
        if b.empty:
            return f'<p class="note">No published number for {escape(ds)} at this imbalance factor.</p>'
        cols = [("acc", "acc"), ("many", "many"), ("medium", "medium"), ("few", "few"), ("nll", "NLL"),
                ("ece", "ECE")]
        cols = [(k, n) for k, n in cols if b[k].notna().any()]
        head = ['<th class="l" data-sort="text">method</th>', '<th class="l" data-sort="text">setting</th>'] + \
            [f'<th data-sort="num" data-first="{"ascending" if k in ("nll", "ece") else "descending"}">{n}</th>'
             for k, n in cols] + ['<th class="l" data-sort="text">source</th>']
        rows = []
        b = b.assign(_o=b.acc.fillna(-1)).sort_values(["_o", "method"], ascending=[False, True], kind="stable")
        for _, x in b.iterrows():
            setting = ", ".join(str(v) for v in (x.backbone, x.stage1, f"{x.epochs} ep" if x.epochs else "") if v)
            cells = [f'<td class="l">{escape(method_label(str(x.method)))}</td>',  # as our rows name it
                     f'<td class="l">{escape(setting)}</td>']
            cells += [f'<td data-v="{_dv(x[k])}">{_num(x[k], 3 if k == "nll" else 2)}</td>' for k, _ in cols]
            cells.append(f'<td class="l" title="{escape(str(x.note))}">{escape(str(x.source))}</td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
        return ('<div class="scroll"><table class="sortable" id="published"><thead><tr>' + "".join(head)
                + "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>"
                '<p class="note">From results/baselines.csv (each row names its source; hover for its note). Other '
                "code bases, schedules and sometimes backbones.</p>")

    def stats_page(self, tag: str) -> None:
        p = Page(self, self.out / tag / "stats.html", f"{tag} paired statistics - ltbench", current=tag)
        comps = [c for c in self.comps if c.dataset_tag == tag]
        reps = max((c.replicates for c in comps), default=0)
        ref = run_label("x-" + self.reference).split(" + ", 1)[1]
        p.add(f"<h1>{escape(tag)}: which differences are real?</h1>",
              f"<p>A − B paired by seed: every method against {escape(ref)} on the same extractor, SWA against "
              f"SGD per method, and each method that needs the SWA extractor against SGD + {escape(ref)}. "
              "<b>95% t (seeds)</b>: mean ± t·std/√n of the per-seed differences, the noise of "
              f"training; <b>95% bootstrap</b>: {reps} paired resamples of the test examples per seed (same indices "
              "for A and B), the noise of the finite test set. The last column names the intervals that exclude 0."
              + (f' Same numbers as <a href="{p.rel(self.results / "stats.md")}">stats.md</a>.'
                 if self.stats_written else "") + "</p>")
        head = ['<th class="l" data-sort="text">A</th>', '<th class="l" data-sort="text">B</th>',
                '<th class="l" data-sort="text">metric</th>', '<th data-sort="num">A</th>',
                '<th data-sort="num">B</th>', '<th data-sort="num" data-first="descending">Δ mean ± std</th>',
                '<th class="l">95% t (seeds)</th>', '<th data-sort="num" data-first="descending">seeds agreeing</th>',
                '<th class="l">95% bootstrap</th>', '<th class="l" data-sort="text">excludes 0</th>']
        rows = []
        for c in comps:
            mark = f' <span title="{escape(", ".join(c.unstable))}">{UNSTABLE_MARK}</span>' if c.unstable else ""
            for m in metrics_present(c):
                st = c.seed_stats(m)
                cell = row_cells(c, m)
                rows.append(
                    f'<tr data-a="{escape(c.a)}" data-b="{escape(c.b)}" data-metric="{m}">'
                    f'<td class="l"><a href="{self.page_name(*c.a.split("-", 1))}">{escape(run_label(c.a))}</a></td>'
                    f'<td class="l"><a href="{self.page_name(*c.b.split("-", 1))}">{escape(run_label(c.b))}</a></td>'
                    f'<td class="l">{METRIC_LABEL[m]}{mark}</td><td data-v="{_dv(st["a_mean"])}">{cell["A"]}</td>'
                    f'<td data-v="{_dv(st["b_mean"])}">{cell["B"]}</td><td data-v="{_dv(st["mean"])}">'
                    f'{escape(cell["diff"])}</td><td class="l">{cell["t95"]}</td><td data-v="{st["agree"]}">'
                    f'{cell["agree"]}</td><td class="l">{cell["boot95"]}</td><td class="l">{cell["excl"]}</td></tr>')
        p.add('<div class="scroll"><table class="sortable" id="stats"><thead><tr>' + "".join(head)
              + "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>")
        if any(c.unstable for c in comps):
            from ..stats import unstable_note
            p.add(f'<p class="note">{escape(unstable_note(comps))}</p>')
        self.write(p.path, p.render())

    def method_page(self, tag: str, s1: str, method: str) -> None:
        d = self.out / tag
        name = f"{s1}-{method}"
        p = Page(self, d / self.page_name(s1, method), f"{tag} {run_label(name)} - ltbench", current=tag)
        g = self.runs_of(tag, s1, method)
        ep, reduced = self.schedule(g["dir"])
        p.add(f'<p><a href="index.html">← {escape(tag)}</a></p>',
              f"<h1>{escape(tag)} · {escape(run_label(name))}</h1>",
              f"<p>{len(g)} seed(s); schedule {escape(ep)} "
              + ('<span class="tag">reduced</span>' if reduced else '<span class="tag full">full</span>')
              + (" " + _unstable_tag() if self.unstable(g["dir"]) else "") + "</p>")
        head = ['<th data-sort="num">seed</th>'] + [
            f'<th data-sort="num" data-first="{"descending" if hi else "ascending"}">{escape(n)}</th>'
            for _, n, hi in COLUMNS] + ['<th data-sort="num">stage-1 train</th>', '<th data-sort="num">stage-2</th>',
                                        '<th class="l">files</th>']
        rows = []
        for _, r in g.iterrows():
            c = self.configs[r["dir"]]
            rd = Path(r["dir"])
            files = " ".join(f'<a href="{p.rel(rd / f)}">{f.split(".")[0] if f != "reliability.png" else "png"}</a>'
                             for f in RUN_FILES if (rd / f).is_file())
            mark = (f' <span title="{escape(str(r.unstable_why))}">{UNSTABLE_MARK}</span>'
                    if bool(r.get("unstable", False)) else "")
            cells = [f'<td data-v="{int(r.seed)}">{int(r.seed)}{mark}</td>']
            cells += [f'<td data-v="{_dv(r[k])}">{_num(r[k], _nd(k)) or "-"}</td>' for k, _, _ in COLUMNS]
            t1, t2 = c.get("stage1_train_time_s"), c.get("stage2_time_s")
            cells += [f'<td data-v="{_dv(t1)}">{_duration(t1 if t1 is not None else math.nan)}</td>',
                      f'<td data-v="{_dv(t2)}">{_duration(t2 if t2 is not None else math.nan)}</td>',
                      f'<td class="l">{files}</td>']
            rows.append("<tr>" + "".join(cells) + "</tr>")
        p.add("<h2>Per seed</h2>", '<div class="scroll"><table class="sortable" id="seeds"><thead><tr>'
              + "".join(head) + "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>",
              f'<p class="note">{"Accuracies and ECE in %, NLL and Brier in nats. "}Other comparisons: '
              '<a href="stats.html">paired statistics</a>.</p>' + self.unstable_note(list(g["dir"])))
        p.add("<h2>Per-epoch curves</h2>", self._curves(g), "<h2>Reliability diagrams</h2>", '<div class="figs">')
        for _, r in g.iterrows():
            f = Path(r["dir"]) / "reliability.png"
            if f.is_file():
                p.add(f'<figure class="small"><img src="{p.rel(f)}" alt="reliability diagram, seed {int(r.seed)}" '
                      f'loading="lazy"><figcaption>seed {int(r.seed)}</figcaption></figure>')
        p.add("</div>", "<h2>Resolved config</h2>")
        for k, (_, r) in enumerate(g.iterrows()):
            c = self.configs[r["dir"]]
            p.add(f"<details{' open' if k == 0 else ''}><summary>seed {int(r.seed)}: "
                  f'<a href="{p.rel(Path(r["dir"]) / "config.json")}">config.json</a></summary>'
                  f"<pre>{escape(_config_text(c))}</pre></details>")
        self.write(p.path, p.render())

    def _curves(self, g: pd.DataFrame) -> str:
        logs = {}
        for _, r in g.iterrows():
            f = Path(r["dir"]) / "log.jsonl"
            rows = [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.is_file() else []
            logs[int(r.seed)] = [x for x in rows if "epoch" in x and "stage" in x]
        stages = sorted({x["stage"] for rows in logs.values() for x in rows})
        charts = []
        for st in stages:
            for key, label in (("loss", "training loss"), ("train_acc", "training accuracy (%)")):
                series = []
                for seed, rows in logs.items():
                    pts = [(x["epoch"], x.get(key)) for x in rows if x["stage"] == st and x.get(key) is not None]
                    if pts:
                        series.append((f"seed {seed}", [a for a, _ in pts], [float(b) for _, b in pts]))
                if series:
                    charts.append(f'<figure class="small">{line_chart(series, f"stage {st}: {label}", "epoch", label)}'
                                  "</figure>")
        if not charts:
            return '<p class="note">No per-epoch log rows recorded for these runs.</p>'
        return '<div class="figs">' + "".join(charts) + "</div>"


def _config_text(c: dict) -> str:
    """Pretty JSON with number lists on one line (train_class_counts would take a screen otherwise)."""
    def walk(o, ind):
        pad = "  " * ind
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f'{pad}  {json.dumps(k)}: {walk(v, ind + 1)}' for k, v in sorted(o.items())]
            return "{\n" + ",\n".join(items) + f"\n{pad}}}"
        if isinstance(o, list) and all(isinstance(x, (int, float)) for x in o):
            return "[" + ", ".join(json.dumps(x) for x in o) + "]"
        if isinstance(o, list):
            return "[" + ", ".join(walk(x, ind + 1) for x in o) + "]"
        return json.dumps(o)
    return walk(c, 0)


def _prune(out: Path, keep: set[Path]) -> list[Path]:
    gone = []
    if out.is_dir():
        for p in sorted(out.rglob("*")):
            if p.is_file() and p.suffix in SITE_SUFFIXES and p.resolve() not in keep:
                p.unlink()
                gone.append(p)
        for p in sorted(out.rglob("*"), reverse=True):
            if p.is_dir() and not any(p.iterdir()):
                p.rmdir()
    return gone


def build_site(results: Path | str, out: Path | str | None = None, baselines: Path | str | None = None,
               reference: str = DEFAULT_REFERENCE, replicates: int = DEFAULT_BOOTSTRAP,
               boot_seed: int = DEFAULT_BOOT_SEED, echo: Callable[[str], None] = print,
               write_stats_files: bool | None = None) -> list[Path]:
    """Write the site; return the files written.

    ``write_stats_files`` (default: when the site goes to ``<results>/site``) also writes ``<results>/stats.md`` and
    ``stats.csv`` from the same comparisons, so a site written elsewhere (other options) leaves them alone.
    """
    results = Path(results)
    out = Path(out) if out else results / "site"
    if write_stats_files is None:
        write_stats_files = out.resolve() == (results / "site").resolve()
    col = collect_runs(results)
    excluded = exclusion_lines(col)
    for line in excluded:
        echo(line)
    if col.runs.empty:
        raise LtbenchError(f"no sound runs found under {results / 'runs'}: nothing to put on a site. Run "
                           "`bench.py run ...` first (or pass --results DIR).")
    if out.exists() and not out.is_dir():
        raise LtbenchError(f"--out {out} is a file; pass a folder")
    try:
        base = load_baselines(baselines)
    except LtbenchError as e:
        if baselines is not None:
            raise
        echo(f"warning: {e}; the site shows no published numbers")
        base = None
    comps = all_comparisons(results, reference, replicates, boot_seed, runs=col.runs)
    site = Site(results, out, col.runs, aggregate(col.runs), base, comps, reference,
                [w.removeprefix("warning: ") for w in excluded])
    written = write_stats(results, reference, replicates, boot_seed, comps=comps, runs=col.runs) \
        if write_stats_files else []
    site.stats_written = bool(write_stats_files)
    written += site.build()
    keep = {p.resolve() for p in written}
    for p in _prune(out, keep):
        echo(f"removed stale {p}")
    return written
