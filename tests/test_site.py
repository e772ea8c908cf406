"""The static site without a browser: deterministic, pruned, every link resolves, committed copy current."""
from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from click.testing import CliRunner

from bench import cli as bench_cli
from ltbench.errors import LtbenchError
from ltbench.report.site import build_site
from report_fixtures import COMMITTED_STORES, STORE_IDS, build_results, copy_store


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("href", "src") and v is not None:
                self.links.append(v)


def links_of(page: Path) -> list[str]:
    p = _Links()
    p.feed(page.read_text())
    return p.links


@pytest.fixture
def store(tmp_path):
    build_results(tmp_path)
    return tmp_path


def _build(results: Path, **kw) -> list[Path]:
    return build_site(results, replicates=kw.pop("replicates", 50), echo=lambda s: None, **kw)


def test_site_pages_and_byte_identical_rebuild(store):
    first = {p: p.read_bytes() for p in _build(store)}
    site = store / "site"
    names = sorted(p.relative_to(site).as_posix() for p in first if site in p.parents)
    assert names == ["assets/site.css", "assets/site.js", "cifar10-lt-if100/index.html",
                     "cifar10-lt-if100/sgd-ce.html", "cifar10-lt-if100/sgd-crt.html", "cifar10-lt-if100/stats.html",
                     "cifar10-lt-if100/swa-crt.html", "cifar100-lt-if50/index.html",
                     "cifar100-lt-if50/sgd-lws.html", "cifar100-lt-if50/stats.html",
                     "cifar100-lt-if50/swa-lws.html", "index.html"]
    assert (store / "stats.md").is_file() and (store / "stats.csv").is_file()
    second = {p: p.read_bytes() for p in _build(store)}
    assert first == second
    # the run that failed the audit is named on the index page, and has no page
    assert "failed audit" in (site / "index.html").read_text()
    assert not (site / "cifar10-lt-if100" / "sgd-tau_norm.html").exists()


def test_every_link_resolves_to_a_file(store):
    _build(store)
    (store / "plots").mkdir()
    for stem in ("reliability", "per-class"):  # figures that exist are linked; missing ones are explained
        (store / "plots" / f"cifar10-lt-if100-{stem}.png").write_bytes(b"\x89PNG")
    _build(store)
    pages = sorted((store / "site").rglob("*.html"))
    for page in pages:
        for link in links_of(page):
            u = urlparse(link)
            assert not u.scheme and not u.netloc, f"{page.name}: external reference {link}"
            target = (page.parent / unquote(u.path)).resolve()
            assert target.exists(), f"{page.relative_to(store)} links to missing {link}"
    setting = (store / "site" / "cifar10-lt-if100" / "index.html").read_text()
    assert "../../plots/cifar10-lt-if100-per-class.png" in setting
    assert "Accuracy vs. ECE: not generated yet" in setting


def test_stale_pages_are_removed(store):
    _build(store)
    extra = store / "site" / "old-setting" / "index.html"
    extra.parent.mkdir()
    extra.write_text("<p>stale</p>")
    keep = store / "site" / "notes.txt"  # not a generated kind of file: left alone
    keep.write_text("mine")
    _build(store)
    assert not extra.exists() and not extra.parent.exists()
    assert keep.read_text() == "mine"


def test_site_command_and_errors(store, tmp_path):
    out = tmp_path / "elsewhere" / "site"
    r = CliRunner().invoke(bench_cli, ["site", "--results", str(store), "--out", str(out), "--bootstrap", "20"])
    assert r.exit_code == 0, r.output
    assert (out / "index.html").is_file()
    assert not (store / "stats.md").exists()  # a site written elsewhere leaves the results folder alone
    assert "stats.md" not in (out / "index.html").read_text()
    # links from a site written outside the results folder still reach the run folders
    page = out / "cifar10-lt-if100" / "sgd-ce.html"
    assert all((page.parent / unquote(urlparse(x).path)).resolve().exists() for x in links_of(page))
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(bench_cli, ["site", "--results", str(empty)])
    assert r.exit_code == 2 and "error:" in r.output and "no sound runs" in r.output
    with pytest.raises(LtbenchError, match="is a file"):
        f = tmp_path / "afile"
        f.write_text("x")
        build_site(store, f, replicates=0, echo=lambda s: None)


def test_leaderboard_html_option(store, tmp_path):
    out = tmp_path / "pages"
    r = CliRunner().invoke(bench_cli, ["leaderboard", "--results", str(store), "--no-plots", "--html", str(out)])
    assert r.exit_code == 0, r.output
    assert (store / "README.md").is_file() and (out / "cifar10-lt-if100" / "index.html").is_file()
    assert "open " + str(out / "index.html") in r.output


@pytest.mark.parametrize("repo_results", COMMITTED_STORES, ids=STORE_IDS)
def test_committed_site_is_current(repo_results, tmp_path, monkeypatch):
    """<store>/site/ is what `bench.py site` makes of the committed runs today (like the markdown leaderboard)."""
    if not (repo_results / "site" / "index.html").is_file():
        pytest.skip("no committed site")
    rel = copy_store(repo_results, tmp_path, skip=("site",))
    copy = tmp_path / rel
    monkeypatch.chdir(tmp_path)  # as `bench.py site --results <store>` from the checkout
    build_site(rel, echo=lambda s: None)
    want = sorted(p.relative_to(repo_results / "site") for p in (repo_results / "site").rglob("*") if p.is_file())
    got = sorted(p.relative_to(copy / "site") for p in (copy / "site").rglob("*") if p.is_file())
    assert got == want, f"{rel}/site/ has different pages: run `bench.py site --results {rel}` and commit"
    for rel_page in want:
        assert (copy / "site" / rel_page).read_bytes() == (repo_results / "site" / rel_page).read_bytes(), (
            f"{rel}/site/{rel_page} is stale: run `bench.py site --results {rel}` and commit")


def test_a_setting_page_says_how_tau_was_chosen_like_the_tables(tmp_path):
    """Old: the site's tables showed tau-norm rows without the tables' note on where tau came from."""
    from report_fixtures import make_run
    make_run(tmp_path, "ce", "sgd", 0, 0.45)
    make_run(tmp_path, "tau_norm", "sgd", 0, 0.5, config_extra={"method_info": {
        "tau": 1.0, "tau_selection": "fixed: held-out sweep degenerate (best 100.00 >= ceiling)"}})
    make_run(tmp_path, "tau_norm_oracle", "sgd", 0, 0.52, config_extra={"method_info": {"tau": 0.4, "oracle": True}})
    _build(tmp_path)
    page = (tmp_path / "site" / "cifar10-lt-if100" / "index.html").read_text()
    assert "held-out sweep degenerate, fixed tau: tau 1 in 1 run" in page
    assert "oracle (test set): tau 0.4 in 1 run" in page
    make_run(tmp_path / "plain", "ce", "sgd", 0, 0.45)
    _build(tmp_path / "plain")
    assert "method_info.tau" not in (tmp_path / "plain" / "site" / "cifar10-lt-if100" / "index.html").read_text()


def test_published_table_names_methods_as_our_rows_do(tmp_path):
    """Old: the published-numbers table printed the baselines file's keys ('crt[backbone=finetune]') where every
    other table on the site says 'cRT'; a method ltbench does not register keeps its published name."""
    import re
    from report_fixtures import make_run
    make_run(tmp_path, "ce", "sgd", 0, 0.45)
    csv = tmp_path / "baselines.csv"
    csv.write_text("dataset,imbalance,backbone,method,stage1,epochs,acc,many,medium,few,nll,ece,split_rule,source,"
                   "note\n"
                   "cifar10-lt,100,resnet32,crt[backbone=finetune],sgd,,71.0,,,,,,,some paper (table 1),n\n"
                   "cifar10-lt,100,resnet32,ldam_drw,sgd,,77.0,,,,,,,another paper (table 2),n\n")
    _build(tmp_path, baselines=csv)
    page = (tmp_path / "site" / "cifar10-lt-if100" / "index.html").read_text()
    table = page[page.index('id="published"'):]
    table = table[:table.index("</table>")]
    first_cells = re.findall(r'<tr><td class="l">([^<]*)</td>', table)
    assert first_cells == ["ldam_drw", "cRT [backbone=finetune]"]  # sorted by accuracy, best first


class _ClaimCells(HTMLParser):
    """Rows of the index page's claims tables: [setting, cell, ...], a cell prefixed '**' when it is in <b>."""
    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self._in, self._bold, self._cell = False, False, None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and ("class", "claims") in attrs:
            self._in = True
        elif self._in and tag == "tr":
            self.rows.append([])
        elif self._in and tag == "td":
            self._cell = ""
        elif self._in and tag == "b":
            self._bold = True

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif self._in and tag == "td":
            self.rows[-1].append(self._cell)
            self._cell = None
        elif tag == "b":
            self._bold = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += f"**{data}**" if self._bold else data


def test_index_reads_the_papers_claims_as_stats_md_does(store):
    """The index page's claims tables carry the same cells (and bold) as the top of stats.md, one row per setting
    that has the pair, each setting linked to its statistics page; a store without a pair has no such section."""
    _build(store)
    p = _ClaimCells()
    p.feed((store / "site" / "index.html").read_text())
    head = (store / "stats.md").read_text().split("\n## ", 2)[1]
    md_rows = [[x.strip() for x in line.strip("|").split("|")] for line in head.splitlines()
               if line.startswith("| ") and not line.startswith("| setting")]
    assert p.rows and [r for r in p.rows if r] == md_rows
    assert [r[0] for r in md_rows] == ["cifar10-lt-if100"]  # swa-crt vs sgd-crt; no other setting has a pair
    assert md_rows[0][2].endswith(" 1/1") and md_rows[0][1] == ""  # one seed paired, no CE on SWA
    assert 'href="cifar10-lt-if100/stats.html">cifar10-lt-if100</a>' in (store / "site" / "index.html").read_text()
    bare = store / "bare"
    build_results(bare)
    for d in (bare / "runs").glob("*/swa-*"):
        shutil.rmtree(d)
    _build(bare)
    assert "The paper's claims" not in (bare / "site" / "index.html").read_text()
    assert "The paper's claims" not in (bare / "stats.md").read_text()
