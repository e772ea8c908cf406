"""benchmarks/commit_runs.py: a finished run folder is committed alone, and only after both checks pass."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from report_fixtures import make_run

REPO = Path(__file__).resolve().parents[1]
SHARED_AUDIT = REPO.parent / "shared" / "tools" / "audit_run.py"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _load():
    spec = importlib.util.spec_from_file_location("commit_runs", REPO / "benchmarks" / "commit_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _git(top: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(top), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    top = tmp_path / "repo"
    (top / "results" / "runs").mkdir(parents=True)
    _git(top, "init", "-q")
    _git(top, "config", "user.email", "t@example.org")
    _git(top, "config", "user.name", "t")
    (top / "notes.txt").write_text("x\n")
    _git(top, "add", "notes.txt")
    _git(top, "commit", "-q", "-m", "init")
    return top


def _stub_audit(path: Path, fail_on: str) -> Path:
    """An audit stand-in that records its arguments and fails for run folders whose path contains ``fail_on``."""
    path.write_text("import json, sys\n"
                    f"open({str(path) + '.log'!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                    f"sys.exit(1 if {fail_on!r} in sys.argv[1] else 0)\n")
    return path


def test_commits_each_passing_run_alone_and_leaves_a_failing_one(repo, tmp_path):
    cr = _load()
    results = repo / "results"
    good, _ = make_run(results, "crt", "sgd", 0, 0.6)
    bad, _ = make_run(results, "crt", "sgd", 1, 0.6)
    reduced, _ = make_run(results, "ce", "swa", 0, 0.5, dataset="cifar100-lt", imbalance=50, reduced=True,
                          counts=[50] * 10)
    for d, env in ((good, {"device": "cpu", "cpu_model": "Some CPU"}), (reduced, {"device": "cuda",
                                                                                  "device_name": "NVIDIA H200"})):
        cfg = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps(dict(cfg, environment=env, stage1_precision="bf16")))
    (repo / "notes.txt").write_text("staged, not for these commits\n")
    _git(repo, "add", "notes.txt")
    audit = _stub_audit(tmp_path / "audit.py", fail_on="seed1")
    assert cr.main(["--results", str(results), "--audit", str(audit), "--once"]) == 1  # one folder failed
    subjects = _git(repo, "log", "--format=%s").splitlines()
    assert subjects[-1] == "init" and len(subjects) == 3
    assert ("results: results/runs/cifar10-lt-if100/sgd-crt/seed0, full 200-epoch schedule, run on CPU (Some CPU, "
            "stage 1 bf16); passes audit_run.py and results check") in subjects
    assert ("results: results/runs/cifar100-lt-if50/swa-ce/seed0, REDUCED schedule (stage 1 10 of 200 epochs, stage 2 "
            "10 of None), run on CUDA (NVIDIA H200, stage 1 bf16); passes audit_run.py and results check") in subjects
    for sha in _git(repo, "log", "--format=%H", "-2").split():  # each commit holds its own folder only
        files = _git(repo, "show", "--name-only", "--format=", sha).split()
        assert files and len({Path(f).parent for f in files}) == 1 and all("seed0" in f for f in files)
    assert "notes.txt" in _git(repo, "diff", "--cached", "--name-only")  # still staged, uncommitted
    assert _git(repo, "ls-files", "--others", "--", "results").strip().count("seed1/") >= 3  # the failed folder
    calls = [json.loads(x) for x in Path(str(audit) + ".log").read_text().splitlines()]
    assert sorted(c[1:] for c in calls) == [["--cifar10-if", "100"], ["--cifar10-if", "100"], ["--cifar100-if", "50"]]


def test_a_failed_folder_is_retried_only_once_it_changes(repo, tmp_path, capsys):
    cr = _load()
    results = repo / "results"
    d, _ = make_run(results, "crt", "sgd", 1, 0.6)
    audit = _stub_audit(tmp_path / "audit.py", fail_on="seed1")
    failed: dict = {}
    top = Path(_git(repo, "rev-parse", "--show-toplevel").strip())
    assert cr.one_pass(top, results, audit, sys.executable, failed) == 1
    assert cr.one_pass(top, results, audit, sys.executable, failed) == 0  # unchanged: not tried again
    assert len(Path(str(audit) + ".log").read_text().splitlines()) == 1
    assert "NOT committed results/runs/cifar10-lt-if100/sgd-crt/seed1: audit_run.py" in capsys.readouterr().out
    (d / "log.jsonl").write_text((d / "log.jsonl").read_text() + "\n")  # the folder changed: tried again
    assert cr.one_pass(top, results, audit, sys.executable, failed) == 1
    assert len(Path(str(audit) + ".log").read_text().splitlines()) == 2


def test_results_check_failure_blocks_the_commit(repo, tmp_path):
    cr = _load()
    results = repo / "results"
    d, metrics = make_run(results, "crt", "sgd", 0, 0.6)
    (d / "metrics.json").write_text(json.dumps(dict(metrics, acc=99.0)))  # no longer what predictions.npz gives
    audit = _stub_audit(tmp_path / "audit.py", fail_on="never")
    assert cr.main(["--results", str(results), "--audit", str(audit), "--once"]) == 1
    assert _git(repo, "log", "--format=%s").splitlines() == ["init"]


@pytest.mark.skipif(not SHARED_AUDIT.is_file(), reason="../shared/tools/audit_run.py not beside the checkout")
def test_the_shared_audit_passes_a_sound_run_and_fails_a_tampered_one(repo):
    cr = _load()
    results = repo / "results"
    d, metrics = make_run(results, "crt", "sgd", 0, 0.6, dataset="cifar10-lt", imbalance=None)
    assert cr.main(["--results", str(results), "--audit", str(SHARED_AUDIT), "--once"]) == 0
    d2, m2 = make_run(results, "ce", "sgd", 0, 0.6, dataset="cifar10-lt", imbalance=None)
    (d2 / "metrics.json").write_text(json.dumps(dict(m2, nll=m2["nll"] + 1.0)))
    assert cr.main(["--results", str(results), "--audit", str(SHARED_AUDIT), "--once"]) == 1
    assert len(_git(repo, "log", "--format=%s").splitlines()) == 2


def test_bad_arguments_are_one_clear_error(tmp_path, capsys):
    cr = _load()
    assert cr.main(["--results", str(tmp_path), "--once"]) == 2
    assert "has no runs/ folder" in capsys.readouterr().err
    (tmp_path / "runs").mkdir()
    assert cr.main(["--results", str(tmp_path), "--audit", str(tmp_path / "nope.py"), "--once"]) == 2
    assert "audit script" in capsys.readouterr().err
    stub = _stub_audit(tmp_path / "audit.py", fail_on="x")
    assert cr.main(["--results", str(tmp_path), "--audit", str(stub), "--once"]) == 2
    assert "not inside a git checkout" in capsys.readouterr().err


def test_a_busy_index_leaves_the_folder_untracked_for_the_next_pass(repo, tmp_path, capsys):
    """Another git command holding the index lock (the developer committing) must neither crash the watcher nor
    mark the folder failed; the next pass commits it."""
    cr = _load()
    results = repo / "results"
    make_run(results, "crt", "sgd", 0, 0.6)
    audit = _stub_audit(tmp_path / "audit.py", fail_on="never")
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    failed: dict = {}
    assert cr.one_pass(repo, results, audit, sys.executable, failed) == 1 and failed == {}
    assert "trying again next pass" in capsys.readouterr().out
    lock.unlink()
    assert cr.one_pass(repo, results, audit, sys.executable, failed) == 0
    assert len(_git(repo, "log", "--format=%s").splitlines()) == 2


def test_a_failed_commit_unstages_the_folder_and_a_plain_commit_never_takes_it(repo, tmp_path):
    """git add succeeded but the commit failed (a hook): the folder must not stay in the index, where the
    developer's next commit would carry it; and while it is added (-N) a plain commit leaves it out."""
    cr = _load()
    results = repo / "results"
    d, _ = make_run(results, "crt", "sgd", 0, 0.6)
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    audit = _stub_audit(tmp_path / "audit.py", fail_on="never")
    failed: dict = {}
    assert cr.one_pass(repo, results, audit, sys.executable, failed) == 1 and d in failed
    assert _git(repo, "diff", "--cached", "--name-only") == "" and _git(repo, "ls-files", "--", "results") == ""
    hook.unlink()
    _git(repo, "add", "-N", "--", "results")  # as commit() leaves it between its add and its commit
    (repo / "notes.txt").write_text("a developer's change\n")
    _git(repo, "add", "notes.txt")
    _git(repo, "commit", "-q", "-m", "developer")  # (commit -a would take them: it stages every tracked path)
    assert "results/" not in _git(repo, "show", "--name-only", "--format=", "HEAD")
    _git(repo, "rm", "-q", "--cached", "-r", "--", "results")
    (d / "log.jsonl").write_text((d / "log.jsonl").read_text() + "\n")  # changed: tried again, committed
    assert cr.one_pass(repo, results, audit, sys.executable, failed) == 0
    assert "results/runs/cifar10-lt-if100/sgd-crt/seed0" in _git(repo, "log", "-1", "--format=%s")


def test_only_the_run_files_are_committed_and_nothing_on_a_detached_head(repo, tmp_path, capsys):
    cr = _load()
    results = repo / "results"
    d, _ = make_run(results, "crt", "sgd", 0, 0.6)
    (d / "logits.npz").write_bytes(b"big")  # save_logits output: git-ignored in results/, never for commit here
    audit = _stub_audit(tmp_path / "audit.py", fail_on="never")
    _git(repo, "checkout", "-q", "--detach")
    assert cr.one_pass(repo, results, audit, sys.executable, {}) == 0
    assert "HEAD is detached" in capsys.readouterr().out and _git(repo, "ls-files", "--", "results") == ""
    _git(repo, "checkout", "-q", "-")
    assert cr.one_pass(repo, results, audit, sys.executable, {}) == 0
    assert sorted(Path(f).name for f in _git(repo, "ls-files", "--", "results").split()) == sorted(cr.RUN_FILES)
    assert cr.new_runs(repo, results) == []  # logits.npz alone does not make the folder new again


def test_message_of_an_old_config_and_of_a_stage2_only_reduction():
    cr = _load()
    old = {"reduced": True, "stage1": {"epochs": 200, "protocol_epochs": 200, "amp_bf16": False},
           "stage2": {"epochs": 2, "protocol_epochs": 10}, "environment": {"device": "cpu", "cpu_model": "X"}}
    assert cr.message("r", old) == ("results: r, REDUCED schedule (stage 1 200 of 200 epochs, stage 2 2 of 10), run on "
                                    "CPU (X, stage 1 fp32); passes audit_run.py and results check")


HEAD_MARK = "# ltbench leaderboard (as committed in this repository)"


def _commit_code(repo: Path) -> None:
    """The committed code the regeneration runs: bench.py, ltbench/, methods/ of this checkout, the leaderboard's
    heading changed, so a README made by this checkout's code instead is told apart."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copy2(REPO / "bench.py", repo / "bench.py")
    for d in ("ltbench", "methods"):
        shutil.copytree(REPO / d, repo / d, ignore=skip)
    board = repo / "ltbench" / "report" / "leaderboard.py"
    board.write_text(board.read_text().replace('"# ltbench leaderboard"', repr(HEAD_MARK)))
    _git(repo, "add", "bench.py", "ltbench", "methods")
    _git(repo, "commit", "-q", "-m", "code")


def test_regenerate_commits_the_leaderboard_of_the_committed_runs_from_committed_code_alone(repo, tmp_path):
    """Old: runs were committed as they landed but the leaderboard only by hand, so a session that ended between
    the two left main stale (stop 33's CI failed). Now the committer regenerates from a snapshot of HEAD: HEAD's
    code runs (not this checkout's, nor an unsaved edit), a run not committed (failed here) stays out; the generated
    files are one commit of their own, deletions included; findings.md quoting a number nothing prints is named;
    a second regeneration commits nothing; a PDF whose PNG twin came out the same is left as committed, and one
    whose PNG changed is taken."""
    cr = _load()
    _commit_code(repo)
    results = repo / "results"
    make_run(results, "ce", "sgd", 0, 0.45)
    make_run(results, "crt", "sgd", 0, 0.52)
    make_run(results, "lws", "sgd", 1, 0.55)  # fails the audit: never committed, so never in the leaderboard
    (results / "findings.md").write_text("CE scores 99.99 here.\n")
    (results / "tables").mkdir()
    (results / "tables" / "stale.md").write_text("a table no setting makes any more\n")
    _git(repo, "add", "results/findings.md", "results/tables/stale.md")
    _git(repo, "commit", "-q", "-m", "findings")
    board = repo / "ltbench" / "report" / "leaderboard.py"
    board.write_text(board.read_text().replace(repr(HEAD_MARK), '"# UNSAVED EDIT"'))
    (repo / "notes.txt").write_text("staged, not for these commits\n")
    _git(repo, "add", "notes.txt")
    audit = _stub_audit(tmp_path / "audit.py", fail_on="seed1")
    assert cr.main(["--results", str(results), "--audit", str(audit), "--once", "--regenerate"]) == 1
    subject, body = _git(repo, "log", "-1", "--format=%s%n%b").split("\n", 1)
    assert subject.startswith("results: regenerate results's leaderboard") and "99.99" in body
    files = _git(repo, "show", "--name-status", "--format=", "HEAD").splitlines()
    assert "D\tresults/tables/stale.md" in files and not (results / "tables" / "stale.md").exists()
    names = [f.split("\t")[1] for f in files]
    assert {"results/README.md", "results/stats.md", "results/site/index.html"} <= set(names)
    assert any(f.startswith("results/tables/results") for f in names) and any(f.endswith(".pdf") for f in names)
    assert all(f.split("/")[1] in cr.GENERATED for f in names)
    readme = (results / "README.md").read_text()
    assert readme.startswith(HEAD_MARK + "\n") and "CE" in readme and "cRT" in readme
    assert "LWS" not in readme and "LWS" not in (results / "stats.md").read_text()
    assert "CE scores 99.99 here." in readme  # the findings section, as committed
    assert _git(repo, "status", "--porcelain", "-uno", "--", "results") == ""  # all committed; lws untracked
    assert _git(repo, "ls-files", "--others", "--", "results").count("sgd-lws/seed1/") >= 3
    assert "notes.txt" in _git(repo, "diff", "--cached", "--name-only")
    assert "ltbench/report/leaderboard.py" in _git(repo, "diff", "--name-only")  # the edit: still unsaved
    top = Path(_git(repo, "rev-parse", "--show-toplevel").strip())
    n_commits = len(_git(repo, "log", "--format=%H").split())
    assert cr.regenerate_and_commit(top, results, sys.executable) == "done"  # nothing changed: no commit
    assert len(_git(repo, "log", "--format=%H").split()) == n_commits

    plots = results / "plots"
    kept, taken = sorted(plots.glob("*-reliability.pdf"))[0], sorted(plots.glob("*-per-class.pdf"))[0]
    made = {p: p.read_bytes() for p in (kept, taken, taken.with_suffix(".png"))}
    for p in made:  # what another CPU committed: the PDFs a few digits apart, one PNG different too
        p.write_bytes(made[p] + b"\n% other\n")
    _git(repo, "commit", "-q", "-m", "plots from another machine", "--", *map(str, made))
    r = cr.regenerate(top, results, sys.executable)
    assert r.unprinted == ["99.99"] and r.gone == []
    assert sorted(r.write) == sorted(p.relative_to(results).as_posix() for p in (taken, taken.with_suffix(".png")))
    assert r.write[taken.relative_to(results).as_posix()] == made[taken]
    assert kept.read_bytes() == made[kept] + b"\n% other\n"  # regenerate() alone writes nothing


def test_a_failed_regeneration_commit_leaves_the_index_and_checkout_as_head(repo, tmp_path):
    """A failing hook must not leave the regenerated files staged for deletion (the old rollback ran `git rm
    --cached` on every file, tracked ones too) nor the checkout changed (a pruned file comes back); a generated file
    with uncommitted changes, or an untracked one in its place, is never overwritten; a nested store without
    baselines.csv is compared with the top store's."""
    cr = _load()
    _commit_code(repo)
    results = repo / "results"
    nested = results / "other"
    make_run(nested, "ce", "sgd", 0, 0.45)
    (results / "baselines.csv").write_text(
        (REPO / "results" / "baselines.csv").read_text().splitlines()[0] + "\n"
        "cifar10-lt,100,resnet32,ce,sgd,,70.36,,,,,,,some paper,\n")
    _git(repo, "add", "results")
    _git(repo, "commit", "-q", "-m", "runs")
    top = Path(_git(repo, "rev-parse", "--show-toplevel").strip())
    assert cr.regenerate_and_commit(top, nested, sys.executable) == "done"
    readme = (nested / "README.md").read_text()
    assert "70.36" in readme and "some paper" in readme
    make_run(nested, "crt", "sgd", 0, 0.52)
    (nested / "tables" / "stale.md").write_text("pruned by the generator\n")
    _git(repo, "add", "results")
    _git(repo, "commit", "-q", "-m", "a run")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    head = _git(repo, "rev-parse", "HEAD")
    assert cr.regenerate_and_commit(top, nested, sys.executable) == "failed"  # waits for the next run
    assert _git(repo, "rev-parse", "HEAD") == head
    assert _git(repo, "status", "--porcelain") == ""  # no staged deletion, no modified or new generated file
    assert (nested / "README.md").read_text() == readme
    assert (nested / "tables" / "stale.md").read_text() == "pruned by the generator\n"
    hook.unlink()
    (nested / "README.md").write_text(readme + "a developer's edit\n")
    assert cr.regenerate_and_commit(top, nested, sys.executable) == "retry"
    assert (nested / "README.md").read_text().endswith("a developer's edit\n")
    _git(repo, "checkout", "--", "results/other/README.md")
    (nested / "plots" / "untracked.png").write_bytes(b"a developer's figure")
    assert cr.regenerate_and_commit(top, nested, sys.executable) == "retry"
    assert _git(repo, "rev-parse", "HEAD") == head


def test_a_commit_during_regeneration_voids_it_only_if_it_changed_the_inputs(repo, tmp_path, monkeypatch):
    cr = _load()
    _commit_code(repo)
    results = repo / "results"
    make_run(results, "ce", "sgd", 0, 0.45)
    _git(repo, "add", "results")
    _git(repo, "commit", "-q", "-m", "a run")
    top = Path(_git(repo, "rev-parse", "--show-toplevel").strip())
    real = cr.regenerate

    def regenerate_then_commit(path: str):
        def run(*args):
            out = real(*args)
            (repo / path).write_text("changed meanwhile\n")
            _git(repo, "add", path)
            _git(repo, "commit", "-q", "-m", f"meanwhile: {path}")
            return out
        return run

    monkeypatch.setattr(cr, "regenerate", regenerate_then_commit("results/findings.md"))
    assert cr.regenerate_and_commit(top, results, sys.executable) == "retry"
    assert _git(repo, "log", "-1", "--format=%s").strip() == "meanwhile: results/findings.md"
    assert not (results / "README.md").exists()
    monkeypatch.setattr(cr, "regenerate", regenerate_then_commit("notes.txt"))
    assert cr.regenerate_and_commit(top, results, sys.executable) == "done"
    assert _git(repo, "log", "-1", "--format=%s").startswith("results: regenerate results's leaderboard")
    assert (results / "README.md").is_file()


def test_once_fails_when_the_regeneration_cannot_run(repo, tmp_path, capsys):
    cr = _load()
    make_run(repo / "results", "ce", "sgd", 0, 0.45)
    audit = _stub_audit(tmp_path / "audit.py", fail_on="never")
    assert cr.main(["--results", str(repo / "results"), "--audit", str(audit), "--once", "--regenerate"]) == 1
    out = capsys.readouterr().out
    assert "committed results/runs/cifar10-lt-if100/sgd-ce/seed0" in out  # the run still went in
    assert "NOT regenerated results: HEAD of" in out and "lacks bench.py, ltbench, methods" in out


def test_the_watcher_regenerates_at_start_and_after_a_committed_run_not_every_pass(repo, tmp_path, monkeypatch):
    """The loop: at start (the store may be stale), then once after a run lands; "retry" runs again next pass,
    "failed" waits for the next run; nothing between."""
    cr = _load()
    results = repo / "results"
    audit = _stub_audit(tmp_path / "audit.py", fail_on="never")
    outcomes = iter(["done", "retry", "done", "failed"])
    calls: list[int] = []
    passes = {"n": 0}

    def fake_regenerate(*args):
        calls.append(passes["n"])
        return next(outcomes)

    def fake_sleep(_):
        passes["n"] += 1
        if passes["n"] in (2, 5):  # a run lands before passes 3 and 6
            make_run(results, "ce", "sgd", passes["n"], 0.45)
        if passes["n"] == 8:
            raise KeyboardInterrupt

    monkeypatch.setattr(cr, "regenerate_and_commit", fake_regenerate)
    monkeypatch.setattr(cr.time, "sleep", fake_sleep)
    assert cr.main(["--results", str(results), "--audit", str(audit), "--regenerate", "--quiet-min", "0"]) == 0
    assert calls == [0, 2, 3, 5]  # start; the run of pass 3 ("retry"), again at pass 4; the run of pass 6 ("failed")
def test_regeneration_waits_for_the_runs_to_be_quiet():
    cr = _load()
    assert cr.regeneration_due(True, float("-inf"), 0.0, 600)  # at start: at once
    assert not cr.regeneration_due(True, 1000.0, 1599.0, 600)  # a run landed under 10 min ago
    assert cr.regeneration_due(True, 1000.0, 1600.0, 600)
    assert not cr.regeneration_due(False, 1000.0, 9999.0, 600)  # nothing committed since the last one
