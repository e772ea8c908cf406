"""The leaderboard names the store it read, links only files that exist, and includes findings.md once."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ltbench.report.leaderboard import build_leaderboard
from report_fixtures import COMMITTED_STORES, STORE_IDS, make_run

REPO_RESULTS = Path(__file__).resolve().parents[1] / "results"


def _links(readme: Path) -> list[str]:
    return [t for t in re.findall(r"\]\(([^)]+)\)", readme.read_text()) if "://" not in t]


def _store(root: Path) -> Path:
    for s in range(2):
        make_run(root, "ce", "sgd", s, 0.45)
        make_run(root, "crt", "sgd", s, 0.6)
    return root


def test_other_store_is_named_and_links_resolve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = _store(tmp_path / "outputs")
    build_leaderboard(Path("outputs"), plots=False, echo=lambda s: None)
    readme = store / "README.md"
    text = readme.read_text()
    assert "`python bench.py leaderboard --results outputs`" in text
    assert "[`outputs/runs/`](runs/)" in text and "results/runs/" not in text
    assert "(baselines.csv)" not in text  # no baselines.csv beside this README: no link to one
    assert "`results/baselines.csv` of the ltbench repository holds" in text
    for target in _links(readme):
        assert (store / target.split("#")[0]).exists(), f"broken link {target}"


def test_store_with_its_own_baselines_links_them(tmp_path):
    store = _store(tmp_path / "results")
    shutil.copy(REPO_RESULTS / "baselines.csv", store / "baselines.csv")
    build_leaderboard(store, baselines=store / "baselines.csv", plots=False, echo=lambda s: None)
    text = (store / "README.md").read_text()
    assert "[baselines.csv](baselines.csv) holds" in text
    assert f"`python bench.py leaderboard --results {store}`" in text  # outside the cwd: in full, runnable
    assert f"[`{store}/runs/`](runs/)" in text
    for target in _links(store / "README.md"):
        assert (store / target.split("#")[0]).exists(), f"broken link {target}"


@pytest.mark.parametrize("store", COMMITTED_STORES, ids=STORE_IDS)
def test_committed_leaderboard_has_findings_once_and_no_broken_link(store):
    readme = store / "README.md"
    findings = store / "findings.md"
    if not findings.is_file():
        pytest.skip("no findings.md")
    text = readme.read_text()
    paragraphs = [p.strip() for p in findings.read_text().split("\n\n") if p.strip()]
    for p in paragraphs:
        assert text.count(p) == 1, f"findings paragraph appears {text.count(p)} times: {p[:60]!r}"
    compare = text.split("## Compared with published numbers")[1] if "## Compared with published" in text else ""
    assert not any(p in compare for p in paragraphs)
    for target in _links(readme):
        assert (store / target.split("#")[0]).exists(), f"broken link {target} in {readme}"
