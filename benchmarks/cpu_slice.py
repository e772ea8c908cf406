"""Plan, and with --start launch, this session's CPU slice of the protocol grid (issue 14): the pending stage-1
networks, in the issue's order, that are projected to finish with their stage 2 before the session ends, in the
thread layout this CPU trains fastest in (one 2-thread process, or two 1-thread processes side by side).

Why a planner: on a 2-core CPU the right layout differs by CPU model (in the step probe, two 1-thread processes
were 1.45x one 2-thread process on a Zen 5 and 0.97x on a Zen 4, where real training measured ~1.1x; the fp32 Zen 3
fits no network at all), and a stage 1 cut off at the end of a session leaves its only progress in a cache that is
lost, so only networks that finish are started.

    python benchmarks/cpu_slice.py --until 04:04                 # plan only (runs benchmarks/step_probe.py first)
    python benchmarks/cpu_slice.py --until 04:04 --probe P.json  # plan from a probe already taken
    python benchmarks/cpu_slice.py --until 04:04 --start         # plan, then start the grids and the committer

``--start`` records the lanes' pids in ``outputs/cpu-slice/slice.json``; while one of them runs, another ``--start``
is refused: the networks it trains have no finished run yet, so a second plan would start them again. A lock
(``slice.lock`` beside it) makes that check and the start one step, so two ``--start`` at once (same --logs) cannot
both go: the second waits for the first to start its lanes, then sees them.

The rates are the probe's bare training step (40 timed steps: 15 read a Zen 4's 2-thread rate 22 % low) in the
precision a run resolves to (bf16 where native), divided by --slack. The work of each network is the grid's own
projection (ltbench.grid.project_parts: evaluation passes at 3x the training rate) plus stage-2 heads at
HEAD_S_PER_IMAGE per run (stage 2 of CIFAR-100-LT IF50 on a bf16 Zen 5: cRT 172 s, LWS 157 s, tau-norm 28 s, logit
adjustment 17 s at one thread beside another network, docs/performance.md 4a''''').
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ltbench.grid import fmt_s  # noqa: E402  (after the path: the script runs from benchmarks/)

ISSUE_ORDER = [("cifar100-lt", 100), ("cifar100-lt", 50), ("cifar100-lt", 10),
               ("cifar10-lt", 100), ("cifar10-lt", 50), ("cifar10-lt", 10)]
PROTOCOL = {"ce", "crt", "lws", "tau_norm", "swag", "srepr"}  # issue 14's methods; the others are extra rows
HEAD_S_PER_IMAGE = 0.005  # stage-2 head training, seconds per run per training image (~64 s a run at 12.6k images)
DEFAULT_CACHE = REPO / ".devcache"  # LTBENCH_CACHE for the plan and the lanes alike, unless the caller sets one
LOCK_FILE = "slice.lock"  # in --logs: held while a --start checks for a running slice and starts its own
LOCK_WAIT_S = 30.0  # how long a --start waits for another's lock (held for the second or so of starting lanes)
SLICE_FILE = "slice.json"  # in --logs: the slice last started (its lanes' pids), so a second --start is refused
MAX_UNTIL_S = 12 * 3600  # a --until further away than this is a time already past (rolled over to tomorrow)


def label(dataset: str, imbalance: int, seed: int, stage1: str) -> str:
    return f"{dataset} IF{imbalance} seed{seed} {stage1}"


@dataclass
class Network:
    """One pending stage-1 network and the runs on it, with its work in images (so any rate can price it)."""

    dataset: str
    imbalance: int
    seed: int
    stage1: str
    work: float         # the grid's own projection of its runs, in training images (ltbench.grid.project_parts
                        # at NOMINAL_THROUGHPUT: stage 1 left, BN recompute, features, SWAG pool, evaluations)
    head_images: float  # pending runs x training set (stage-2 heads, which project_parts leaves out)
    runs: int
    protocol_runs: int

    @property
    def label(self) -> str:
        return label(self.dataset, self.imbalance, self.seed, self.stage1)

    def seconds(self, train_img_s: float) -> float:
        return self.work / train_img_s + self.head_images * HEAD_S_PER_IMAGE

    def grid_args(self) -> list[str]:
        return ["--dataset", self.dataset, "--imbalance", str(self.imbalance), "--seed", str(self.seed),
                "--stage1", self.stage1]


@dataclass
class Slice:
    layout: str                 # "single" (one 2-thread process) or "pair" (two 1-thread processes)
    lanes: list[list[Network]]  # each lane one process, its networks one after the other
    finish_s: list[float]       # when each lane is projected to finish
    left: list[Network]         # pending networks that do not fit

    @property
    def networks(self) -> list[Network]:
        return [n for lane in self.lanes for n in lane]

    @property
    def protocol_runs(self) -> int:
        return sum(n.protocol_runs for n in self.networks)

    def score(self) -> tuple:
        return (self.protocol_runs, sum(n.runs for n in self.networks), -max(self.finish_s, default=0.0))


def fit(nets: list[Network], lanes: int, train_img_s: float, budget_s: float, layout: str) -> Slice:
    """In plan order, put each network on the lane that frees first if it still finishes within ``budget_s``
    there; a network that does not fit waits for a later session and a smaller one after it may still go (as
    ``bench.py grid --time-budget``). Every lane runs at ``train_img_s`` (for a pair, the rate of each process
    while the other also trains: a lane left alone at the end is faster, so this errs towards starting less)."""
    out = Slice(layout, [[] for _ in range(lanes)], [0.0] * lanes, [])
    for n in nets:
        i = min(range(lanes), key=lambda k: out.finish_s[k])
        t = out.finish_s[i] + n.seconds(train_img_s)
        if t <= budget_s:
            out.lanes[i].append(n)
            out.finish_s[i] = t
        else:
            out.left.append(n)
    return out


def choose(nets: list[Network], single_img_s: float, pair_img_s: float, budget_s: float) -> Slice:
    """The layout that finishes more protocol runs (then more runs, then sooner)."""
    a = fit(nets, 1, single_img_s, budget_s, "single")
    b = fit(nets, 2, pair_img_s, budget_s, "pair")
    return b if b.score() > a.score() else a


def pending_networks(results: str, data_root: str | None, seeds: list[int],
                     order: list[tuple[str, int]] = ISSUE_ORDER,
                     refused: list[str] | None = None) -> list[Network]:
    """The grid's own plan (``bench.py grid``'s, against the store ``results`` and the stage-1 cache of
    ``$LTBENCH_CACHE``) as pending networks. A group with a finished run of another config is left out (``bench.py
    grid`` refuses it without ``--replace``) and its label appended to ``refused``."""
    from ltbench.grid import NOMINAL_THROUGHPUT, build_plan, project_parts
    from ltbench.registry import get_dataset

    nets = []
    for ds, imb in order:
        spec = get_dataset(ds)
        n_train = spec.train_size(imb)
        for g in build_plan([ds], [imb], seeds, data_root=data_root, results=results):
            pend = g.pending
            if any(r.conflict for r in g.runs):
                if refused is not None:
                    refused.append(label(ds, imb, g.key[2], g.key[3]))
                continue
            if pend:
                work = project_parts(g, n_train, spec.test_size, NOMINAL_THROUGHPUT).group(g)
                nets.append(Network(ds, imb, g.key[2], g.key[3], work, len(pend) * n_train, len(pend),
                                    sum(r.cfg.method in PROTOCOL for r in pend)))
    return nets


def probe_rates(probe: dict, slack: float) -> tuple[float, float, str]:
    """(one 2-thread process, each of two 1-thread processes) training images/s from a step_probe JSON, in the
    precision a run resolves to here, divided by ``slack``."""
    prec = "bf16" if probe.get("cpu_native_bf16") else "fp32"
    single = probe["one_process_2_threads"][prec]
    pair = min(probe[f"two_processes_1_thread_{prec}"]["each"])
    return single / slack, pair / slack, prec


def seconds_until(hhmm: str, now: dt.datetime) -> float:
    """Seconds from ``now`` to the next ``HH:MM`` (UTC, today or tomorrow); more than :data:`MAX_UNTIL_S` is an
    error, as a session's end that has just passed would otherwise become a budget of almost a day."""
    h, m = (int(x) for x in hhmm.split(":"))
    end = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if end <= now:
        end += dt.timedelta(days=1)
    sec = (end - now).total_seconds()
    if sec > MAX_UNTIL_S:
        raise ValueError(f"--until {hhmm} UTC is {fmt_s(sec)} away (is it already past?); give the session's end")
    return sec


def earliest_until(now: dt.datetime, seconds: float, reserve_min: float) -> str | None:
    """The earliest --until (HH:MM UTC, rounded up to the minute) whose budget holds ``seconds`` of work; None when
    that is further away than an --until may be (MAX_UNTIL_S: a later HH:MM would read as a time already past)."""
    if seconds + reserve_min * 60 + 60 > MAX_UNTIL_S:
        return None
    end = now + dt.timedelta(seconds=seconds + reserve_min * 60)
    if end.second or end.microsecond:
        end = end.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    return f"{end:%H:%M}"


def lane_command(lane: list[Network], threads: int, results: str, data_root: str, python: str) -> str:
    """One shell line: the lane's networks one after the other, each a resumable ``bench.py grid`` of one group."""
    cmds = [shlex.join([python, "bench.py", "grid", *n.grid_args(), "--results", results, "--data-root", data_root,
                        "--threads", str(threads), "--calibration-steps", "0"]) for n in lane]
    return "; ".join(cmds)


def _runs(pid: int, what: bytes) -> bool:
    """Whether ``pid`` is alive and its command line has ``what`` (a recycled pid of another program has not).
    Its arguments are joined with spaces: a lane is ``sh -c '... bench.py grid ...'`` while sh waits on it, but
    a shell that execs a -c list's last command (bash) leaves ``python bench.py grid ...`` as separate arguments."""
    try:
        return what in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")  # a zombie's is empty
    except OSError:
        return False


def running_slice(logs: Path) -> dict | None:
    """The slice recorded in ``logs``/slice.json, with ``alive`` its lanes still running; None when none is."""
    try:
        rec = json.loads((logs / SLICE_FILE).read_text())
        alive = [int(p) for p in rec.get("lanes", []) if _runs(int(p), b"bench.py grid")]
        networks = [str(n) for n in rec.get("networks", [])]
    except (OSError, ValueError, TypeError, AttributeError):  # none yet, or not one this script wrote
        return None
    return {**rec, "alive": alive, "networks": networks} if alive else None


def running_committer(logs: Path, results: str) -> int | None:
    """The pid of the ``commit_runs.py`` the last slice started for the store ``results``, if it still runs (it
    loops until stopped)."""
    try:
        rec = json.loads((logs / SLICE_FILE).read_text())
        pid = int(rec.get("committer"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return pid if rec.get("results") == results and _runs(pid, b"commit_runs.py") else None


def spawn(args: list[str], log: Path, env: dict) -> int:
    """Start ``args`` detached from this process (own session, no stdin), appending to ``log``; its pid."""
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True).pid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--until", required=True, help="when the session ends, HH:MM UTC")
    ap.add_argument("--reserve", type=float, default=40.0,
                    help="minutes kept free at the end for regeneration, findings and CI (default 40)")
    ap.add_argument("--probe", type=Path, help="a benchmarks/step_probe.py JSON (default: take one now, ~2 min)")
    ap.add_argument("--slack", type=float, default=1.15, help="projected = probe rate / SLACK (default 1.15)")
    ap.add_argument("--results", default="results")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--start", action="store_true", help="start the lanes and benchmarks/commit_runs.py")
    ap.add_argument("--logs", type=Path, default=Path("outputs/cpu-slice"), help="where the lanes' logs go")
    ap.add_argument("--python", default=sys.executable, help="the interpreter the lanes run (default: this one)")
    a = ap.parse_args(argv)
    now = dt.datetime.now(dt.timezone.utc)
    if Path.cwd().resolve() != REPO:  # the store, data and logs paths are read (and the lanes run) from the root
        print(f"cpu_slice.py: run it from the repository root ({REPO}); cd there and run it again", file=sys.stderr)
        return 2
    try:
        seconds_until(a.until, now)
    except ValueError as e:
        print(f"cpu_slice.py: {e}", file=sys.stderr)
        return 2
    running = running_slice(a.logs)
    if running:  # its networks have no finished runs yet: a new plan would count them as pending again
        what = (f"the slice started {running.get('started', '?')} is still running (lanes: pid "
                f"{', '.join(map(str, running['alive']))}; {'; '.join(running['networks'])})")
        if a.start:
            print(f"cpu_slice.py: {what}; another would train its networks a second time. Wait for it to finish, "
                  f"or stop it (kill -- -PID for each lane) and run again", file=sys.stderr)
            return 2
        print(f"cpu_slice.py: note: {what}; the plan below counts its networks as pending", file=sys.stderr)
    from ltbench.data.file_lists import usable_cpus
    cores = usable_cpus()
    if cores != 2:
        print(f"cpu_slice.py: warning: the layouts (one 2-thread process, two 1-thread ones) are for 2 cores; "
              f"this process may use {cores}", file=sys.stderr)
    os.environ.setdefault("LTBENCH_CACHE", str(DEFAULT_CACHE))  # the plan reads the cache the lanes will use
    if a.probe:
        probe = json.loads(a.probe.read_text())
        from ltbench.train.loop import cpu_has_native_bf16
        if bool(probe.get("cpu_native_bf16")) != cpu_has_native_bf16():
            kind = "with" if probe.get("cpu_native_bf16") else "without"
            print(f"cpu_slice.py: warning: {a.probe} was taken on a CPU {kind} native bf16, unlike this one: its rates "
                  "do not apply here", file=sys.stderr)
    else:
        a.logs.mkdir(parents=True, exist_ok=True)
        path = a.logs / f"step-probe-{now:%Y%m%dT%H%M}.json"
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "step_probe.py"), "--no-compile", "--steps", "40",
                        "--out", str(path)], check=True, stdout=subprocess.DEVNULL)
        probe = json.loads(path.read_text())
        print(f"probe: {path} (pass --probe {path} to plan again on this machine without a new probe)")
    single, pair, prec = probe_rates(probe, a.slack)
    budget = seconds_until(a.until, dt.datetime.now(dt.timezone.utc)) - a.reserve * 60  # after the probe
    refused: list[str] = []
    nets = pending_networks(a.results, a.data_root, [int(s) for s in a.seeds.split(",")], refused=refused)
    s = choose(nets, single, pair, budget)
    print(f"{probe.get('cpu_model', '?')}: {prec}; projected stage-1 rate {single:.0f} img/s (one 2-thread process), "
          f"{pair:.0f} img/s each (two 1-thread processes); budget {fmt_s(max(budget, 0))} "
          f"(until {a.until} UTC less {a.reserve:.0f} min)")
    print(f"{len(nets)} pending networks; layout {s.layout}: {len(s.networks)} fit, {s.protocol_runs} protocol runs")
    threads, rate = (2, single) if s.layout == "single" else (1, pair)
    for i, lane in enumerate(s.lanes):
        for n in lane:
            print(f"  lane {i}: {n.label:34s} {n.protocol_runs} protocol runs, ~{fmt_s(n.seconds(rate))}")
        if lane:
            print(f"  lane {i} finishes in ~{fmt_s(s.finish_s[i])}")
    for n in s.left[:6]:
        print(f"  later: {n.label} (~{fmt_s(n.seconds(single))} alone at 2 threads)")
    if len(s.left) > 6:
        print(f"  later: {len(s.left) - 6} more")
    if s.left:  # what a longer session (or a later --until) would start: the quickest network left
        q = min(s.left, key=lambda n: n.seconds(single))
        alone = q.seconds(single)
        if alone > budget:  # too long even alone: the end that would fit it
            until = earliest_until(dt.datetime.now(dt.timezone.utc), alone, a.reserve)
            print(f"  quickest left: {q.label} (~{fmt_s(alone)} at 2 threads) "
                  + (f"would fit a --until of {until} UTC" if until else "needs more than a 12-hour session"))
        else:  # it would fit alone, only not after the networks planned before it
            print(f"  quickest left: {q.label} (~{fmt_s(alone)} at 2 threads) fits a session of its own, not after "
                  "this slice's networks")
    for label in refused:
        print(f"  not planned: {label} (a finished run of another config: bench.py grid refuses it without --replace)")
    if not a.start or not s.networks:
        return 0
    a.logs.mkdir(parents=True, exist_ok=True)
    from ltbench.checkpoint import file_lock
    try:
        # two --start at once (with the same --logs) would both pass the check above, taken before the ~2 min
        # probe: the second waits here while the first starts its lanes (a second or so), then sees its record
        with file_lock(a.logs / LOCK_FILE, timeout_s=LOCK_WAIT_S):
            running = running_slice(a.logs)  # again, under the lock: one started while this one probed
            if running:
                print(f"cpu_slice.py: the slice started {running.get('started', '?')} began while this one planned "
                      f"(lanes: pid {', '.join(map(str, running['alive']))}); nothing started", file=sys.stderr)
                return 2
            launch(a, s, threads)
    except TimeoutError:
        print(f"cpu_slice.py: another cpu_slice.py --start has held {a.logs / LOCK_FILE} for over "
              f"{LOCK_WAIT_S:.0f} s; if none runs (ps), delete the file and run again", file=sys.stderr)
        return 2
    return 0


def launch(a: argparse.Namespace, s: Slice, threads: int) -> None:
    """Start the slice's lanes and the committer, and record them in ``a.logs``/slice.json (under the lock), with
    the time the lanes started (not the command's: the probe before them takes ~2 min). If any of it fails, what
    it started is stopped again: a lane left running without a record would be planned, and trained, twice."""
    now = dt.datetime.now(dt.timezone.utc)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # LTBENCH_CACHE: the one the plan read
    lanes: list[int] = []
    ours: list[int] = []  # the process groups this call started (each spawn is its own session)
    try:
        for i, lane in enumerate(s.lanes):
            if lane:
                log = a.logs / f"lane{i}.log"
                cmd = lane_command(lane, threads, a.results, a.data_root, a.python)
                lanes.append(spawn(["nice", "-n", "10", "sh", "-c", cmd], log, env))
                ours.append(lanes[-1])
                print(f"started lane {i} (pid {lanes[-1]}), log {log}")
        log = a.logs / "commit_runs.log"
        pid = running_committer(a.logs, a.results)
        if pid is not None:  # the last slice's, still watching the store: a second would commit the same folders
            print(f"benchmarks/commit_runs.py of the last slice still runs (pid {pid}): it commits these runs too")
        else:
            pid = spawn(["nice", "-n", "5", a.python, str(REPO / "benchmarks" / "commit_runs.py"), "--results",
                         a.results, "--regenerate"], log, env)
            ours.append(pid)
            print(f"started benchmarks/commit_runs.py (pid {pid}), log {log}")
        from ltbench.checkpoint import atomic_write_json
        atomic_write_json(a.logs / SLICE_FILE, {"started": f"{now:%Y-%m-%d %H:%M} UTC", "until": a.until,
                                                "layout": s.layout, "lanes": lanes, "committer": pid,
                                                "results": a.results, "networks": [n.label for n in s.networks]})
    except BaseException:
        import signal
        for p in ours:
            try:
                os.killpg(p, signal.SIGTERM)
            except OSError:  # already gone
                pass
        raise


if __name__ == "__main__":
    raise SystemExit(main())
