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

With ``--regenerate`` it also keeps the store's generated files (``README.md``, ``tables/``, ``plots/``,
``stats.*``, ``site/``) current, as the test suite demands of a committed store (stop 33's CI failed on a store
left stale when a session ended between its runs and the regeneration): at start, and once no run has landed for
``--quiet-min`` minutes after one did, it regenerates them (``bench.py leaderboard --results <store> --html
<store>/site``) in a snapshot of HEAD, so only committed runs and committed code feed them (never a run landing
meanwhile, nor an unsaved edit of the report code), and commits what changed, deletions included, alone (the
repository must hold bench.py, ltbench/ and methods/ at HEAD). It waits while a generated file has uncommitted
changes or an untracked file sits where it would write (never overwriting either), and throws the result away if
a commit meanwhile changed the code or the store. A session ending within --quiet-min of its last run still leaves
the store stale. A PDF whose PNG twin came out byte-identical is left as committed: the two are drawn from one figure,
and such PDFs differ only in the last digit of a few coordinates from one CPU to another. Prose is not
regenerated: when ``findings.md`` then quotes a number no generated file prints (a new seed moved a mean), the log
and the commit message name it, and CI fails until the text is updated by hand.

    python benchmarks/commit_runs.py --results results            # every 60 s until interrupted
    python benchmarks/commit_runs.py --results results --once     # one pass (exit 1 if a folder failed)
    python benchmarks/commit_runs.py --results results --regenerate   # and keep the generated files current
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ltbench.audit import check_run  # noqa: E402
from ltbench.checkpoint import atomic_write_bytes  # noqa: E402
from ltbench.report.findings import unprinted_numbers  # noqa: E402
from ltbench.store import RUN_FILES  # noqa: E402

DEFAULT_AUDIT = REPO.parent / "shared" / "tools" / "audit_run.py"
RUN_PATH = re.compile(r"/runs/[^/]+/[^/]+/seed\d+$")
GENERATED = ("README.md", "stats.md", "stats.csv", "tables", "plots", "site")  # what `leaderboard --html` writes
CODE = ("bench.py", "ltbench", "methods")  # what the snapshot needs to run the regeneration
DATA = ("results/baselines.csv",)  # the published rows a store without its own baselines.csv is compared with
IN_PROGRESS = ("MERGE_HEAD", "rebase-merge", "rebase-apply", "CHERRY_PICK_HEAD", "REVERT_HEAD", "BISECT_LOG")


class GitBusy(Exception):
    """Another git command holds the index lock; the folder is left untracked and tried again next pass."""


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} {msg}", flush=True)


def _git_env() -> dict[str, str]:
    """Paths are paths, never globs: a store or run folder named with '[', '*' or '?' still matches itself."""
    return {**os.environ, "GIT_LITERAL_PATHSPECS": "1"}


def git_ok(top: Path, *args: str) -> bool:
    """Whether a git command succeeds (its output discarded): for the commands whose exit status is the answer."""
    return subprocess.run(["git", "-C", str(top), *args], capture_output=True, env=_git_env()).returncode == 0


def git(top: Path, *args: str) -> str:
    """stdout of a git command; file names that are not UTF-8 survive (surrogateescape), a held index lock is
    GitBusy, any other failure CalledProcessError."""
    p = subprocess.run(["git", "-C", str(top), *args], capture_output=True, env=_git_env())
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
    if not git_ok(top, "symbolic-ref", "-q", "HEAD"):
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


def commit_files(top: Path, files: list[str], msg: str) -> None:
    """Commit ``files`` (paths relative to ``top``: new, modified or deleted) alone; on a git failure leave the new
    ones untracked again (the tracked ones as they were in the index), then re-raise."""
    tracked = set(git(top, "ls-files", "-z", "--", *files).split("\0"))
    new = [f for f in files if f not in tracked]
    if new:
        git(top, "add", "-N", "--", *new)
    try:
        git(top, "commit", "-q", "-m", msg, "--", *files)
    except (GitBusy, subprocess.CalledProcessError):
        for _ in range(30 if new else 0):  # the intent-to-add entries must go, or a run is never seen as new again
            if git_ok(top, "rm", "-q", "--cached", "--", *new):
                break
            time.sleep(1)
        raise


def _repo_rel(top: Path, path: Path) -> str:
    """A path relative to the repository root, as git prints paths ('.' at the root)."""
    return path.resolve().relative_to(top).as_posix()


def _in_store(rel: str, f: str) -> str:
    return f if rel == "." else f"{rel}/{f}"


def commit(top: Path, d: Path) -> str:
    """Commit the run files of ``d`` alone; on a git failure leave them untracked again, then re-raise."""
    rel = _repo_rel(top, d)
    msg = message(rel, json.loads((d / "config.json").read_text()))
    commit_files(top, [f"{rel}/{f}" for f in RUN_FILES], msg)
    return msg


def _generated_files(store: Path) -> dict[str, bytes]:
    """The generated files of ``store`` by path relative to it."""
    out = {}
    for name in GENERATED:
        p = store / name
        for f in ([p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else []):
            out[f.relative_to(store).as_posix()] = f.read_bytes()
    return out


class Regenerated(NamedTuple):
    """A store regenerated from commit ``sha``: the generated files of that commit (``before``) and the files to
    write (``write``) and to delete (``gone``), by path relative to the store; ``unprinted``: what findings.md then
    quotes that no generated file prints (None: nothing to check)."""
    sha: str
    before: dict[str, bytes]
    write: dict[str, bytes]
    gone: list[str]
    unprinted: list[str] | None


def regenerate(top: Path, results: Path, python: str) -> Regenerated:
    """Regenerate the store's generated files from HEAD (its committed runs and code) in a snapshot; nothing in the
    checkout is touched. A PDF whose PNG twin came out byte-identical is not taken (CPUs differ in the last digit
    of a few of its coordinates); files the generator pruned are ``gone``."""
    rel = _repo_rel(top, results)
    sha = git(top, "rev-parse", "HEAD").strip()
    code = git(top, "ls-tree", "--name-only", sha, "--", *CODE).split()
    if sorted(code) != sorted(CODE):
        raise RuntimeError(f"HEAD of {top} lacks {', '.join(sorted(set(CODE) - set(code)))}: the store's "
                           "generated files are regenerated by the committed code")
    extra = git(top, "ls-tree", "--name-only", sha, "--", *DATA).split()  # the default baselines, for nested stores
    with tempfile.TemporaryDirectory(prefix="commit-runs-") as tmp:
        snap = Path(tmp)
        tar = subprocess.run(["git", "-C", str(top), "archive", "--format=tar", sha, "--", *CODE, *extra, rel],
                             capture_output=True, check=True, env=_git_env()).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            try:
                t.extractall(snap, filter="data")
            except TypeError:  # Python < 3.11.4 has no filter; the archive is this repository's own
                t.extractall(snap)
        before = _generated_files(snap / rel)
        env = {k: v for k, v in os.environ.items() if k not in ("LTBENCH_RESULTS", "PYTHONSAFEPATH")}
        env.update(HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1",  # the snapshot's code first
                   PYTHONPATH=os.pathsep.join(filter(None, [str(snap), os.environ.get("PYTHONPATH")])))
        p = subprocess.run(["nice", "-n", "10", python, "bench.py", "leaderboard", "--results", rel, "--html",
                            f"{rel}/site"], cwd=snap, env=env, capture_output=True, text=True, timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"bench.py leaderboard failed (exit {p.returncode}): "
                               f"{(p.stdout + p.stderr).strip()[-500:]}")
        after = _generated_files(snap / rel)
        same_png = {f[:-4] for f in after if f.endswith(".png") and before.get(f) == after[f]}
        write = {f: data for f, data in after.items() if before.get(f) != data
                 and not (f.endswith(".pdf") and f in before and f[:-4] in same_png)}
        try:
            unprinted = unprinted_numbers(snap / rel)
        except (OSError, UnicodeDecodeError) as e:
            raise RuntimeError(f"cannot read {rel}/findings.md: {e}") from None
        return Regenerated(sha, before, write, sorted(before.keys() - after.keys()), unprinted)


_last_wait: list[str] = []  # the last reason the regeneration waited, logged once per reason, not every pass


def _wait(msg: str) -> str:
    if _last_wait != [msg]:
        log(msg)
        _last_wait[:] = [msg]
    return "retry"


def regenerate_and_commit(top: Path, results: Path, python: str) -> str:
    """Regenerate the store from HEAD and commit what changed, alone. Returns "done" (committed, or nothing to
    commit), "retry" (next pass: git busy, a generated file with uncommitted changes, which is never overwritten,
    or a commit since HEAD that changed what the regeneration read) or "failed" (logged; tried again after the next
    committed run: the generator or the commit failed)."""
    rel = _repo_rel(top, results)
    paths = [_in_store(rel, g) for g in GENERATED]

    def not_now() -> str | None:
        dirty = git(top, "status", "--porcelain", "--untracked-files=all", "--", *paths).strip()
        return repo_busy(top) or (f"uncommitted changes to generated files of {rel}: {dirty.splitlines()[0]} ..."
                                  if dirty else None)

    why = not_now()
    if why:
        return _wait(f"not regenerating now: {why}")
    try:
        r = regenerate(top, results, python)
    except (RuntimeError, OSError, subprocess.SubprocessError, tarfile.TarError) as e:
        log(f"NOT regenerated {rel}: {e}")
        return "failed"
    if r.unprinted:
        log(f"WARNING: {rel}/findings.md quotes {', '.join(r.unprinted)}, which no regenerated file prints: "
            "update it from stats.md / tables (CI fails until then)")
    if not r.write and not r.gone:
        log(f"{rel}: generated files are current")
        return "done"
    why = not_now()
    if not why and git(top, "rev-parse", "HEAD").strip() != r.sha:  # a commit meanwhile: did it touch the inputs?
        inputs = [*CODE, *DATA, rel]
        if not git_ok(top, "diff", "--quiet", r.sha, "HEAD", "--", *inputs):
            why = "a commit changed its inputs while it ran"
    if why:  # what was made from the old HEAD is thrown away
        return _wait(f"regenerated {rel} but not taken: {why}; trying again next pass")
    files = sorted([*r.write, *r.gone])
    msg = (f"results: regenerate {rel}'s leaderboard, tables, plots, stats and site from the committed runs "
           f"({len(files)} files; commit_runs.py)")
    if r.unprinted:
        msg += f"\n\n{rel}/findings.md still quotes {', '.join(r.unprinted)}, which no generated file prints now."
    try:
        for f, data in r.write.items():
            atomic_write_bytes(results / f, data)
        for f in r.gone:
            (results / f).unlink(missing_ok=True)
        commit_files(top, [_in_store(rel, f) for f in files], msg)
    except BaseException as e:  # a failed write or commit, or the watcher stopped: the checkout back as HEAD has it
        for f in files:
            with contextlib.suppress(Exception):
                if f in r.before:
                    atomic_write_bytes(results / f, r.before[f])
                else:
                    (results / f).unlink(missing_ok=True)
        if not isinstance(e, Exception):
            raise
        detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) and e.stderr else e
        if isinstance(e, GitBusy):
            return _wait(f"regenerated {rel} but not committed yet (git busy: {detail}); trying again next pass")
        log(f"regenerated {rel} but NOT committed ({type(e).__name__}: {detail}); trying again after the next run")
        return "failed"
    _last_wait.clear()
    log(f"committed the regenerated {rel} ({len(files)} files)")
    return "done"


def regeneration_due(stale: bool, last_commit: float, now: float, quiet_s: float) -> bool:
    """Regenerate once the runs have been quiet for ``quiet_s``: a group's runs land minutes apart, and each
    regeneration commits its plots (~1 MB for a CIFAR-100 setting), so not after every one of them."""
    return stale and now - last_commit >= quiet_s


def one_pass(top: Path, results: Path, audit: Path, python: str, failed: dict[Path, tuple],
             committed: list[Path] | None = None) -> int:
    """Check and commit every new run folder (appended to ``committed``); return how many were not committed."""
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
            if committed is not None:
                committed.append(d)
        except GitBusy as e:
            bad += 1
            log(f"not committed yet {rel} (git busy: {e}); trying again next pass")
        except (OSError, ValueError, subprocess.CalledProcessError) as e:  # a folder renamed away, bad JSON, hook
            failed[d], bad = stamp(d) if d.is_dir() else (), bad + 1
            detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) and e.stderr else e
            log(f"NOT committed {rel}: {type(e).__name__}: {detail}")
    return bad


def _interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=Path("results"), help="the store (inside a git checkout)")
    ap.add_argument("--audit", type=Path, default=DEFAULT_AUDIT, help=f"audit script (default: {DEFAULT_AUDIT})")
    ap.add_argument("--every", type=float, default=60.0, help="seconds between passes")
    ap.add_argument("--once", action="store_true", help="one pass, then exit (1 if a folder was not committed)")
    ap.add_argument("--regenerate", action="store_true",
                    help="at start and once runs have been quiet for --quiet-min after one landed, regenerate the "
                         "store's leaderboard, tables, plots, stats and site from HEAD and commit what changed")
    ap.add_argument("--quiet-min", type=float, default=10.0,
                    help="with --regenerate: minutes without a newly committed run before regenerating (default 10)")
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
    stale = a.regenerate  # at start: the store may be stale already (runs committed by hand, or a restart)
    if a.once:
        bad = one_pass(top, a.results, a.audit, sys.executable, failed)
        if stale and regenerate_and_commit(top, a.results, sys.executable) != "done":
            bad += 1
        return 1 if bad else 0
    log(f"watching {a.results}/runs every {a.every:g} s (Ctrl-C to stop)" + (
        f"; regenerating its leaderboard once no run has landed for {a.quiet_min:g} min" if a.regenerate else ""))
    last_commit = float("-inf")
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by kill: unwind (a regeneration restores the checkout)
    try:
        while True:
            committed: list[Path] = []
            try:
                one_pass(top, a.results, a.audit, sys.executable, failed, committed)
            except (GitBusy, subprocess.CalledProcessError, OSError) as e:  # the pass itself: try the next one
                log(f"pass failed ({type(e).__name__}: {e}); trying again in {a.every:g} s")
            if committed:
                last_commit = time.monotonic()
            stale = a.regenerate and (stale or bool(committed))
            if regeneration_due(stale, last_commit, time.monotonic(), a.quiet_min * 60):
                try:  # "failed" waits for the next committed run: a lasting failure must not rerun every pass
                    stale = regenerate_and_commit(top, a.results, sys.executable) == "retry"
                except Exception as e:  # noqa: BLE001 -- the watcher outlives any one regeneration
                    stale = False
                    log(f"regeneration failed ({type(e).__name__}: {e}); trying again after the next run")
            time.sleep(a.every)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
