"""Commit each finished run folder of a results store as soon as it lands, once it passes both checks.

The protocol grid runs for hours in the background, and a session can end before anyone looks (issue 14: "each
finished run committed as it lands"). This watches ``<results>/runs/`` for run folders git does not track yet and,
for each complete one (config.json, metrics.json, predictions.npz), runs

1. the independent audit, ``../shared/tools/audit_run.py DIR`` with ``--cifar100-if`` / ``--cifar10-if`` from the
   run's config (class-split accuracies checked against the LDAM-DRW counts), and
2. ``bench.py results check --results <results> --quiet`` over the whole store,

then commits that folder alone (``git commit -- DIR``: whatever else is staged stays staged), with a message that
says the schedule (full or reduced), the device and the stage-1 precision from its config.json. A folder that fails
is reported and left untracked; it is tried again only when its metrics.json changes.

    python benchmarks/commit_runs.py --results results            # every 60 s until interrupted
    python benchmarks/commit_runs.py --results results --once     # one pass (exit 1 if a folder failed)
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AUDIT = REPO.parent / "shared" / "tools" / "audit_run.py"
NEEDED = ("config.json", "metrics.json", "predictions.npz")
RUN_PATH = re.compile(r"runs/[^/]+/[^/]+/seed\d+$")


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}", flush=True)


def git(top: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(top), *args], check=True, capture_output=True, text=True).stdout


def untracked_runs(top: Path, results: Path) -> list[Path]:
    """Complete run folders under ``results/runs`` with a file git does not track (nor ignore)."""
    out = git(top, "ls-files", "--others", "--exclude-standard", "-z", "--", str(results.resolve() / "runs"))
    dirs = sorted({(top / f).parent for f in out.split("\0") if f})
    return [d for d in dirs if RUN_PATH.search(d.as_posix()) and all((d / f).is_file() for f in NEEDED)]


def audit_args(config: dict) -> list[str]:
    """The audit's class-count option for a CIFAR-LT run at a real imbalance factor (none for other datasets)."""
    flag = {"cifar100-lt": "--cifar100-if", "cifar10-lt": "--cifar10-if"}.get(config.get("dataset", ""))
    return [flag, str(int(config["imbalance"]))] if flag and config.get("imbalance") else []


def message(rel: str, config: dict) -> str:
    s1, env = config.get("stage1") or {}, config.get("environment") or {}
    epochs, protocol = s1.get("epochs"), s1.get("protocol_epochs")
    schedule = (f"REDUCED schedule ({epochs} of {protocol} stage-1 epochs)" if config.get("reduced")
                else f"full {epochs}-epoch schedule")
    device = env.get("device", "?")
    where = env.get("device_name") or env.get("cpu_model") or "?"
    return (f"results: {rel}, {schedule} on {device.upper() if device == 'cpu' else device} ({where}, stage 1 "
            f"{config.get('stage1_precision', '?')}); passes audit_run.py and results check")


def check_and_commit(top: Path, results: Path, d: Path, audit: Path, python: str) -> tuple[bool, str]:
    """(committed, why not / the message)."""
    config = json.loads((d / "config.json").read_text())
    a = subprocess.run([python, str(audit), str(d), *audit_args(config)], capture_output=True, text=True)
    if a.returncode != 0:
        return False, f"audit_run.py failed: {(a.stdout + a.stderr).strip()[-300:]}"
    c = subprocess.run([python, str(REPO / "bench.py"), "results", "check", "--results", str(results), "--quiet"],
                       capture_output=True, text=True)
    if c.returncode != 0:
        return False, f"bench.py results check failed: {(c.stdout + c.stderr).strip()[-300:]}"
    rel = d.resolve().relative_to(top).as_posix()
    msg = message(rel, config)
    try:
        git(top, "add", "--", rel)
        git(top, "commit", "-q", "-m", msg, "--", rel)
    except subprocess.CalledProcessError as e:  # e.g. another git command holds the index lock: try next pass
        for _ in range(10):  # untracked again (the lock may still be held: wait for it)
            if subprocess.run(["git", "-C", str(top), "reset", "-q", "--", rel], capture_output=True).returncode == 0:
                break
            time.sleep(1)
        raise GitBusy(e.stderr.strip()) from e
    return True, msg


class GitBusy(Exception):
    """git add / commit failed for a folder that passed both checks; it is left untracked and tried again."""


def one_pass(top: Path, results: Path, audit: Path, python: str, failed: dict[Path, float]) -> int:
    """Check and commit every new run folder; return how many failed in this pass."""
    bad = 0
    for d in untracked_runs(top, results):
        stamp = (d / "metrics.json").stat().st_mtime
        if failed.get(d) == stamp:
            continue  # reported already; unchanged since
        try:
            ok, text = check_and_commit(top, results, d, audit, python)
        except GitBusy as e:
            log(f"not committed yet {d.relative_to(top)} (git: {e}); trying again next pass")
            bad += 1
            continue
        if ok:
            failed.pop(d, None)
            log(f"committed {d.relative_to(top)}")
        else:
            failed[d], bad = stamp, bad + 1
            log(f"NOT committed {d.relative_to(top)}: {text}")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"), help="the store (inside a git checkout)")
    ap.add_argument("--audit", type=Path, default=DEFAULT_AUDIT, help=f"audit script (default: {DEFAULT_AUDIT})")
    ap.add_argument("--every", type=float, default=60.0, help="seconds between passes")
    ap.add_argument("--once", action="store_true", help="one pass, then exit (1 if a folder failed)")
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
    failed: dict[Path, float] = {}
    if a.once:
        return 1 if one_pass(top, a.results, a.audit, sys.executable, failed) else 0
    log(f"watching {a.results}/runs every {a.every:g} s (Ctrl-C to stop)")
    try:
        while True:
            one_pass(top, a.results, a.audit, sys.executable, failed)
            time.sleep(a.every)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
