"""`bench.py results check` and ``audit.check_all``: every kind of broken entry is listed, sound runs pass, exit 1
on any problem, --clean removes only leftovers, and the tables leave failing runs out."""
from __future__ import annotations

import json
import shutil

import click
from click.testing import CliRunner

from ltbench.audit import check_all
from ltbench.report.tables import collect_runs
from ltbench.cli.results import results_group
from report_fixtures import make_run


def _cli() -> click.Group:
    @click.group()
    def g() -> None: ...
    g.add_command(results_group)
    return g


def test_results_check_lists_every_problem(tmp_path):
    res = tmp_path / "results"
    good, _ = make_run(res, "ce", "sgd", 0, 60.0)
    # hidden files that are not ours (a .gitkeep, a .DS_Store) are skipped at every level, as the tables skip them
    for hidden in (res / "runs" / ".gitkeep", good.parents[1] / ".DS_Store", good.parent / ".DS_Store"):
        hidden.write_text("")
    r = CliRunner().invoke(_cli(), ["results", "check", "--results", str(res)])
    assert r.exit_code == 0 and "1 entry checked: 1 sound run, no problems" in r.output, r.output

    tampered, _ = make_run(res, "crt", "sgd", 0, 50.0)
    m = json.loads((tampered / "metrics.json").read_text())
    m["acc"] += 1.0
    (tampered / "metrics.json").write_text(json.dumps(m))
    moved, _ = make_run(res, "lws", "sgd", 0, 50.0)
    shutil.move(moved, moved.parent / "seed3")                # config says seed 0
    missing, _ = make_run(res, "tau_norm", "sgd", 0, 50.0)
    (missing / "predictions.npz").unlink()                     # half-present folder
    leftover = good.parent / ".seed1.tmp-otherhost.123-abc"    # a killed writer's hidden folder
    leftover.mkdir()
    (leftover / "metrics.json").write_text("{")
    (res / "runs" / "notes.txt").write_text("stray")

    report = check_all(res)
    assert report[good] == []
    assert any("acc: metrics.json says" in p for p in report[tampered])
    assert any("does not match its config" in p for p in report[moved.parent / "seed3"])
    assert report[missing] == ["missing predictions.npz"]
    assert "leftover" in report[leftover][0] and "stray" in report[res / "runs" / "notes.txt"][0]

    r = CliRunner().invoke(_cli(), ["results", "check", "--results", str(res), "--quiet"])
    assert r.exit_code == 1, r.output
    fails = [line for line in r.output.splitlines() if line.startswith("FAIL")]
    assert len(fails) >= 5 and "6 entries checked: 1 sound run, 5 entries with " in r.output, r.output

    # the tables use the same audit: only the sound run reaches them, the tampered / misplaced ones are excluded
    col = collect_runs(res)
    assert col.runs["method"].tolist() == ["ce"]
    assert {d.parent.name for d, _ in col.excluded} >= {"sgd-crt", "sgd-lws"}

    r = CliRunner().invoke(_cli(), ["results", "check", "--results", str(res), "--clean"])
    assert r.exit_code == 1 and "; 1 leftover removed" in r.output and not leftover.exists(), r.output
    assert tampered.exists() and missing.exists()  # --clean never deletes run folders


def test_results_check_without_runs(tmp_path):
    """A folder without runs/ is not a store: an error (it used to pass as 'no runs', so a typo passed CI)."""
    r = CliRunner().invoke(_cli(), ["results", "check", "--results", str(tmp_path)])
    assert r.exit_code != 0 and "has no runs/ folder" in str(r.exception)


def test_results_replot_redraws_sound_runs_only(tmp_path):
    """`results replot` writes a fresh diagram (with the count strip: a taller figure than a single axes) for each
    sound run, leaves every other file byte-identical, and leaves a run that fails the audit alone."""
    import hashlib
    import io

    from PIL import Image

    res = tmp_path / "results"
    good, _ = make_run(res, "ce", "sgd", 0, 60.0)
    bad, _ = make_run(res, "crt", "sgd", 0, 50.0)
    m = json.loads((bad / "metrics.json").read_text())
    m["acc"] += 1.0
    (bad / "metrics.json").write_text(json.dumps(m))
    for d in (good, bad):
        (d / "reliability.png").write_bytes(b"old figure")

    def digests(d):
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in d.iterdir() if f.name != "reliability.png"}

    before = digests(good)
    r = CliRunner().invoke(_cli(), ["results", "replot", "--results", str(res)])
    assert r.exit_code == 0, r.output
    assert "1 reliability diagram redrawn" in r.output and "1 run left alone" in r.output
    assert "skip  runs/" in r.output and "crt" in r.output.split("skip  ")[1]
    img = Image.open(io.BytesIO((good / "reliability.png").read_bytes()))
    assert img.format == "PNG" and img.height > img.width  # diagram + count strip beneath it
    assert digests(good) == before
    assert (bad / "reliability.png").read_bytes() == b"old figure"
    missing = CliRunner().invoke(_cli(), ["results", "replot", "--results", str(tmp_path / "typo")])
    assert missing.exit_code != 0 and "does not exist" in str(missing.exception or missing.output)
