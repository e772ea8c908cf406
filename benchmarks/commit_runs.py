"""Commit each finished run folder of a results store as soon as it lands, once it passes both checks.

The protocol grid runs for hours in the background, and a session can end before anyone looks (issue 14: "each
finished run committed as it lands"). This watches ``<results>/runs/`` for run folders whose files git does not
track yet and, for each one holding every run file (``ltbench.store.RUN_FILES``), runs

1. the independent audit, ``../shared/tools/audit_run.py DIR`` with ``--cifar100-if`` / ``--cifar10-if`` from the
   run's config (class-split accuracies checked against the LDAM-DRW counts), and
2. the check ``bench.py results check`` makes of each run folder (``ltbench.audit.check_run``: files, schema,
   metrics recomputed, config against the folder name),

then commits that folder's run files alone: they are added with ``git add -N`` (intent to add, so a developer's
plain ``git commit`` at that instant leaves them out; ``commit -a`` would not) and committed with
``git commit -- <files>`` (whatever else is staged stays staged); other files in the folder (``logits.npz``) are
never added. The message says both stages' schedules (full or REDUCED), the device and the stage-1 precision, from
config.json. A folder that fails is reported once and tried again when one of its files changes; a git failure
(the index lock held by another git command) leaves it untracked and is retried next pass. Nothing is committed
while HEAD is detached or a merge, rebase, cherry-pick or bisect is in progress. A committed run that is re-run
(``--force``) is modified, not new: commit that by hand.

    python benchmarks/commit_runs.py --results results            # every 60 s until interrupted
    python benchmarks/commit_runs.py --results results --once     # one pass (exit 1 if a folder failed)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ltbench.audit import check_run  # noqa: E402
from ltbench.store import RUN_FILES  # noqa: E402

DEFAULT_AUDIT = REPO.parent / "shared" / "tools" / "audit_run.py"
RUN_PATH = re.compile(r"/runs/[^/]+/[^/]+/seed\d+$")
IN_PROGRESS = ("MERGE_HEAD", "rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG")


class GitBusy(Exception):
    """Another git command holds the index lock; the folder is left untracked and tried again next pass."""


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}", flush=True)


def git(top: Path, *args: str) -> str:
    """stdout of a git command; file names that are not UTF-8 survive (surrogateescape), a held index lock is
    GitBusy, any other failure CalledProcessError."""
    p = subprocess.run(["git", "-C", str(top), *args], capture_output=True)
    err = os.fsdecode(p.stderr)
    if p.returncode != 0:
        if "index.lock" in err:
            raise GitBusy(err.strip())
        raise subprocess.CalledProcessError(p.returncode, ["git", *args], os.fsdecode(p.stdout), err)
    return os.fsdecode(p.stdout)


def repo_busy(top: Path) -> str | None:
    """Why nothing should be committed now (detached HEAD, an operation in progress), else None."""
    gitdir = Path(git(top, "rev-parse", "--absolute-git-dir").strip())
    state = [name for name in IN_PROGRESS if (gitdir / name).exists()]
    if state:
        return f"a git operation is in progress ({', '.join(state)})"
    if subprocess.run(["git", "-C", str(top), "symbolic-ref", "-q", "HEAD"], capture_output=True).returncode:
        return "HEAD is detached"
    return None


def new_runs(top: Path, results: Path) -> list[Path]:
    """Run folders under ``results/runs`` with a run file git does not track (nor ignore), holding every run file."""
    out = git(top, "ls-files", "--others", "--exclude-standard", "-z", "--", str(results.resolve() / "runs"))
    dirs = sorted({(top / f).parent for f in out.split("\0") if f and Path(f).name in RUN_FILES})
    return [d for d in dirs if RUN_PATH.search(d.as_posix()) and all((d / f).is_file() for f in RUN_FILES)]


def stamp(d: Path) -> tuple:
    """What must change before a failed folder is tried again: each run file's size and mtime."""
    return tuple((f, (d / f).stat().st_size, (d / f).stat().st_mtime_ns) for f in RUN_FILES if (d / f).is_file())


def audit_args(config: dict) -> list[str]:
    """The audit's class-count option for a CIFAR-LT run at a real imbalance factor (none for other datasets)."""
    flag = {"cifar100-lt": "--cifar100-if", "cifar10-lt": "--cifar10-if"}.get(config.get("dataset", ""))
    return [flag, str(int(config["imbalance"]))] if flag and config.get("imbalance") else []


def _precision(config: dict) -> str:
    if config.get("stage1_precision"):
        return str(config["stage1_precision"])
    amp = (config.get("stage1") or {}).get("amp_bf16")  # configs recorded before stage1_precision existed
    return "?" if amp is None else ("bf16" if amp else "fp32")


def message(rel: str, config: dict) -> str:
    """The commit subject: folder, schedule, device, stage-1 precision, the checks passed."""
    s1, s2, env = config.get("stage1") or {}, config.get("stage2") or {}, config.get("environment") or {}
    if config.get("reduced"):
        schedule = (f"REDUCED schedule (stage 1 {s1.get('epochs')} of {s1.get('protocol_epochs')} epochs, stage 2 "
                    f"{s2.get('epochs')} of {s2.get('protocol_epochs')})")
    else:
        schedule = f"full {s1.get('epochs')}-epoch schedule"
    device = str(env.get("device", "?")).upper()
    where = env.get("device_name") or env.get("cpu_model") or "?"
    return (f"results: {rel}, {schedule}, run on {device} ({where}, stage 1 {_precision(config)}); passes "
            "audit_run.py and results check")


def check(d: Path, audit: Path, python: str) -> list[str]:
    """Why ``d`` must not be committed (empty when both checks pass)."""
    config = json.loads((d / "config.json").read_text())
    a = subprocess.run([python, str(audit), str(d), *audit_args(config)], capture_output=True, text=True)
    if a.returncode != 0:
        return [f"audit_run.py: {(a.stdout + a.stderr).strip()[-300:]}"]
    return [f"results check: {p}" for p in check_run(d)]


def commit(top: Path, d: Path) -> str:
    """Commit the run files of ``d`` alone; on a git failure leave them untracked again, then re-raise."""
    rel = d.resolve().relative_to(top).as_posix()
    files = [f"{rel}/{f}" for f in RUN_FILES]
    msg = message(rel, json.loads((d / "config.json").read_text()))
    git(top, "add", "-N", "--", *files)
    try:
        git(top, "commit", "-q", "-m", msg, "--", *files)
    except (GitBusy, subprocess.CalledProcessError):
        for _ in range(30):  # the intent-to-add entries must go, or the folder is never seen as new again
            if subprocess.run(["git", "-C", str(top), "rm", "-q", "--cached", "--", *files],
                              capture_output=True).returncode == 0:
                break
            time.sleep(1)
        raise
    return msg


def one_pass(top: Path, results: Path, audit: Path, python: str, failed: dict[Path, tuple]) -> int:
    """Check and commit every new run folder; return how many were not committed in this pass."""
    why = repo_busy(top)
    if why:
        log(f"not committing now: {why}")
        return 0
    bad = 0
    for d in new_runs(top, results):
        rel = d.relative_to(top)
        try:
            st = stamp(d)
            if failed.get(d) == st:
                continue  # reported already; unchanged since
            problems = check(d, audit, python)
            if problems:
                failed[d], bad = st, bad + 1
                log(f"NOT committed {rel}: " + "; ".join(problems))
                continue
            commit(top, d)
            failed.pop(d, None)
            log(f"committed {rel}")
        except GitBusy as e:
            bad += 1
            log(f"not committed yet {rel} (git busy: {e}); trying again next pass")
        except (OSError, ValueError, subprocess.CalledProcessError) as e:  # a folder renamed away, bad JSON, hook
            failed[d], bad = stamp(d) if d.is_dir() else (), bad + 1
            detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) and e.stderr else e
            log(f"NOT committed {rel}: {type(e).__name__}: {detail}")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"), help="the store (inside a git checkout)")
    ap.add_argument("--audit", type=Path, default=DEFAULT_AUDIT, help=f"audit script (default: {DEFAULT_AUDIT})")
    ap.add_argument("--every", type=float, default=60.0, help="seconds between passes")
    ap.add_argument("--once", action="store_true", help="one pass, then exit (1 if a folder was not committed)")
    a = ap.parse_args(argv)
    if not (a.results / "runs").is_dir():
        print(f"error: {a.results} has no runs/ folder; pass --results DIR of a results store", file=sys.stderr)
        return 2
    if not a.audit.is_file():
        print(f"error: audit script {a.audit} not found; pass --audit PATH (../shared/tools/audit_run.py)",
              file=sys.stderr)
        return 2
    try:
        top = Path(git(a.results, "rev-parse", "--show-toplevel").strip())
    except subprocess.CalledProcessError:
        print(f"error: {a.results} is not inside a git checkout; nothing to commit into", file=sys.stderr)
        return 2
    failed: dict[Path, tuple] = {}
    if a.once:
        return 1 if one_pass(top, a.results, a.audit, sys.executable, failed) else 0
    log(f"watching {a.results}/runs every {a.every:g} s (Ctrl-C to stop)")
    try:
        while True:
            try:
                one_pass(top, a.results, a.audit, sys.executable, failed)
            except (GitBusy, subprocess.CalledProcessError, OSError) as e:  # the pass itself: try the next one
                log(f"pass failed ({type(e).__name__}: {e}); trying again in {a.every:g} s")
            time.sleep(a.every)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
