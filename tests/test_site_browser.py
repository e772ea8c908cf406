"""The committed site in a real browser: headless Chromium (Debian's package) driven by Playwright.

Checks the tables against the run store (recomputed here with pandas from metrics.json), sorts a column, follows
every link, asserts nothing is fetched from the network, and saves desktop and narrow screenshots to
/tmp/ltbench-site-screenshots/ for a person to look at. Skips, saying why, without Chromium or Playwright
(`.ci/run` installs Debian's chromium where it runs as root; Playwright is in the dev extra).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
SITE = RESULTS / "site"
SHOTS = Path(os.environ.get("LTBENCH_SCREENSHOTS", "/tmp/ltbench-site-screenshots"))
CHROMIUM = os.environ.get("LTBENCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install -e '.[dev]')")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium chromium-driver; or set "
                "LTBENCH_CHROMIUM)", allow_module_level=True)
if not (SITE / "index.html").is_file():
    pytest.skip("no committed site under results/site (run bench.py site)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One Chromium with a fresh profile; every request that is not a local file is refused and recorded."""
    external: list[str] = []
    with sync_api.sync_playwright() as p:
        try:
            ctx = p.chromium.launch_persistent_context(str(tmp_path_factory.mktemp("chromium-profile")),
                                                       executable_path=CHROMIUM, headless=True, args=FLAGS)
        except Exception as e:  # a broken or incompatible Chromium is an environment problem, not a site bug
            pytest.skip(f"cannot start Chromium at {CHROMIUM}: {str(e).splitlines()[0]}")

        def route(r):
            if r.request.url.startswith("file://"):
                r.continue_()
            else:
                external.append(r.request.url)
                r.abort()

        ctx.route("**/*", route)
        ctx.external = external
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.js_errors = errors
    yield pg
    assert not errors, f"JavaScript errors: {errors}"
    pg.close()


def expected_table() -> pd.DataFrame:
    """Mean / std per (dataset_tag, run name) straight from config.json + metrics.json (not via ltbench)."""
    rows = []
    for m in sorted((RESULTS / "runs").glob("*/*/seed*/metrics.json")):
        cfg = json.loads((m.parent / "config.json").read_text())
        rows.append({"tag": cfg["dataset_tag"], "run": m.parent.parent.name, "seed": cfg["seed"],
                     "reduced": bool(cfg["reduced"]), **json.loads(m.read_text())})
    df = pd.DataFrame(rows)
    # the documented rule: where a setting has full-schedule seeds, its reduced-schedule seeds are left out
    has_full = df.groupby(["tag", "run"])["reduced"].transform(lambda r: (~r).any())
    df = df[~(df["reduced"] & has_full)]
    g = df.groupby(["tag", "run"])
    out = g[["acc", "acc_many", "acc_medium", "acc_few", "nll", "ece", "brier"]].agg(["mean", "std"])
    out[("n", "")] = g.size()
    return out


def read_table(pg, table_id: str) -> list[dict]:
    return pg.evaluate("""id => Array.from(document.querySelectorAll('#' + id + ' tbody tr')).map(tr => ({
        run: tr.dataset.run || null,
        cells: Array.from(tr.cells).map(td => ({text: td.textContent.trim(), v: td.getAttribute('data-v')}))}))""",
                       table_id)


def headers(pg, table_id: str) -> list[str]:
    return pg.eval_on_selector_all(f"#{table_id} thead th", "ths => ths.map(t => t.textContent.trim())")


def settings() -> list[str]:
    return sorted(p.parent.name for p in SITE.glob("*/index.html"))


@pytest.mark.parametrize("tag", settings())
def test_setting_table_matches_the_run_store(page, tag):
    page.goto((SITE / tag / "index.html").as_uri())
    exp = expected_table().loc[tag]
    head = headers(page, "results")
    rows = read_table(page, "results")
    assert sorted(r["run"] for r in rows) == sorted(exp.index)
    col = {h.split(" (")[0]: i for i, h in enumerate(head)}
    for r in rows:
        e = exp.loc[r["run"]]
        assert int(r["cells"][col["seeds"]]["text"]) == e[("n", "")]
        for key, name, nd in [("acc", "acc", 2), ("acc_many", "many", 2), ("acc_medium", "medium", 2),
                              ("acc_few", "few", 2), ("nll", "NLL", 3), ("ece", "ECE", 2), ("brier", "Brier", 3)]:
            cell = r["cells"][col[name]]
            mean, std = e[(key, "mean")], e[(key, "std")]
            if pd.isna(mean):
                assert cell["text"] == "-" and cell["v"] == ""
                continue
            assert float(cell["v"]) == pytest.approx(mean, abs=1e-9), (r["run"], name)
            # the documented rule: no std for one seed
            want = f"{mean:.{nd}f}" if pd.isna(std) else f"{mean:.{nd}f} ± {std:.{nd}f}"
            assert cell["text"] == want, (r["run"], name)
    # the page opens ranked by accuracy
    accs = [float(r["cells"][col["acc"]]["v"]) for r in rows]
    assert accs == sorted(accs, reverse=True)


def test_sorting_a_column(page):
    tag = settings()[0]
    page.goto((SITE / tag / "index.html").as_uri())
    col = {h.split(" (")[0]: i for i, h in enumerate(headers(page, "results"))}

    def column(name):
        return [r["cells"][col[name]] for r in read_table(page, "results")]

    ece = page.locator("#results thead th", has_text="ECE")
    ece.click()  # lower is better: first click ascending
    vals = [float(c["v"]) for c in column("ECE")]
    assert vals == sorted(vals) and ece.get_attribute("aria-sort") == "ascending"
    ece.click()
    vals = [float(c["v"]) for c in column("ECE")]
    assert vals == sorted(vals, reverse=True) and ece.get_attribute("aria-sort") == "descending"
    nll = page.locator("#results thead th", has_text="NLL")
    nll.press("Enter")  # keyboard works too; the other header loses its arrow
    vals = [float(c["v"]) for c in column("NLL")]
    assert vals == sorted(vals) and ece.get_attribute("aria-sort") is None
    page.locator("#results thead th", has_text="method").click()
    names = [c["text"].lower() for c in column("method")]
    assert names == sorted(names)
    # rows stayed whole: each row's link still goes to its own method page
    for r in read_table(page, "results"):
        href = page.get_attribute(f'#results tr[data-run="{r["run"]}"] a', "href")
        assert href == f'{r["run"]}.html'


def method_page_and_pair(tag: str) -> tuple[str, tuple[str, str]]:
    """A method page with stage-1 and stage-2 curves to follow, and a pair the statistics page compares:
    SWA + SRepr against SWA + cRT (the paper's question) when the store has them, else cRT and another method
    on the first extractor that has a cRT run (a store filled in slices may not hold SRepr yet)."""
    runs = sorted(p.name for p in (RESULTS / "runs" / tag).iterdir() if p.is_dir())
    if "swa-srepr" in runs and "swa-crt" in runs:
        return "swa-srepr", ("swa-srepr", "swa-crt")
    crt = next(r for r in runs if r.endswith("-crt"))
    other = next(r for r in runs if r.startswith(crt.split("-")[0] + "-") and r != crt)
    return crt, (other, crt)


def _browsed_pages() -> list[Path]:
    """The index, each setting's table and statistics pages, and two method pages per setting (the link check
    without a browser, tests/test_site.py, covers every page)."""
    out = [SITE / "index.html"]
    for tag in settings():
        out += [SITE / tag / "index.html", SITE / tag / "stats.html"]
        out += sorted(p for p in (SITE / tag).glob("*.html") if p.stem not in ("index", "stats"))[:1]
        out += [p for p in [SITE / tag / "swa-srepr.html"] if p.is_file()]
    return out


def test_every_link_and_image_resolves(page, browser):
    for html in _browsed_pages():
        page.goto(html.as_uri())
        page.wait_for_load_state("load")
        refs = page.evaluate("""() => [
            ...Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
            ...Array.from(document.querySelectorAll('img[src], script[src]')).map(e => e.src),
            ...Array.from(document.querySelectorAll('link[href]')).map(e => e.href)]""")
        assert refs, html
        for ref in refs:
            u = urlparse(ref)
            assert u.scheme == "file", f"{html.relative_to(SITE)}: non-local reference {ref}"
            assert Path(unquote(u.path)).exists(), f"{html.relative_to(SITE)} links to missing {ref}"
        broken = page.evaluate("() => Array.from(document.images).filter(i => i.complete && i.naturalWidth === 0)"
                               ".map(i => i.src)")
        lazy = page.evaluate("() => Array.from(document.images).filter(i => !i.complete).map(i => i.src)")
        for src in lazy:  # lazy images below the fold: load each directly
            assert Path(unquote(urlparse(src).path)).stat().st_size > 1000
        assert not broken, f"{html.relative_to(SITE)}: images that did not decode: {broken}"
        css_applied = page.evaluate("() => getComputedStyle(document.querySelector('header.top')).display")
        assert css_applied == "flex", f"{html.relative_to(SITE)}: stylesheet not applied"
    assert browser.external == [], f"pages tried to fetch from the network: {browser.external}"


def test_following_links_from_the_index(page):
    page.goto((SITE / "index.html").as_uri())
    tag = settings()[0]
    page.click(f'.card h2 a:text-is("{tag}")')
    assert page.url.endswith(f"/{tag}/index.html")
    run, (a, b) = method_page_and_pair(tag)
    link = page.locator(f'#results tr[data-run="{run}"] a').first
    label = link.inner_text().strip()
    link.click()
    assert page.url.endswith(f"/{tag}/{run}.html")
    assert label in page.locator("h1").inner_text()
    # per-epoch curves: one line per seed in each chart, one point per logged epoch
    seeds = sorted((RESULTS / "runs" / tag / run).glob("seed*"))
    logs = [[json.loads(x) for x in (d / "log.jsonl").read_text().splitlines() if x.strip()] for d in seeds]
    charts = page.locator("figure svg")
    assert charts.count() == 4  # stage 1 and 2, loss and training accuracy
    first = charts.nth(0).locator("polyline")
    assert first.count() == len(seeds)
    n_points = len(first.nth(0).get_attribute("points").split())
    assert n_points == sum(1 for r in logs[0] if r.get("stage") == 1)
    page.click("text=← " + tag)
    assert page.url.endswith(f"/{tag}/index.html")
    page.click('a:text-is("Paired statistics")')
    assert page.url.endswith(f"/{tag}/stats.html")
    row = page.locator(f'#stats tr[data-a="{a}"][data-b="{b}"][data-metric="acc"]')
    assert row.count() == 1


@pytest.mark.parametrize("width", [1400, 400])
def test_screenshots_desktop_and_narrow(page, width):
    """Saved for a person to look at; asserts the page never scrolls sideways (wide tables scroll in place)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": 900})
    tag = settings()[0]
    for rel in ["index.html", f"{tag}/index.html", f"{tag}/{method_page_and_pair(tag)[0]}.html", f"{tag}/stats.html"]:
        page.goto((SITE / rel).as_uri())
        page.wait_for_load_state("load")
        out = SHOTS / f"{rel.replace('/', '_').removesuffix('.html')}-{width}.png"
        page.screenshot(path=str(out), full_page=True)
        assert out.stat().st_size > 10_000
        overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{rel} at {width}px scrolls sideways by {overflow}px"
