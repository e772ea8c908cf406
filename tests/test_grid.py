"""``bench.py grid``: the plan enumerates the protocol grid, groups runs by stage-1 artifact, skips finished runs,
and a tiny grid runs end to end and resumes (a second invocation runs nothing)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ltbench.grid import build_plan, fmt_s, method_grid, split_groups, Group
from ltbench.registry import get_method, method_names

REPO = Path(__file__).resolve().parent.parent


def _expected_methods() -> int:
    sgd = [m for m in method_names() if not get_method(m).requires_swag]
    return len(sgd) + len(method_names())  # sgd: non-SWAG methods; swa: every method


def test_method_grid_matches_registry():
    pairs = method_grid()
    assert len(pairs) == _expected_methods()
    assert ("srepr", "swa") in pairs and ("srepr", "sgd") not in pairs and ("ce", "sgd") in pairs
    # with the current registry: 6 methods on the SGD extractor (ce, crt, lws, tau_norm, tau_norm_oracle,
    # logit_adjust), 8 on the SWA extractor (those + swag, srepr)
    assert sum(1 for _, s in pairs if s == "sgd") == 6 and sum(1 for _, s in pairs if s == "swa") == 8


def test_plan_enumerates_the_full_protocol_grid(tmp_path):
    groups = build_plan(["cifar10-lt", "cifar100-lt"], [10, 50, 100], [0, 1, 2], results=str(tmp_path))
    runs = [r for g in groups for r in g.runs]
    assert len(runs) == 2 * 3 * 3 * _expected_methods() == 252
    assert len({r.out for r in runs}) == len(runs)
    # one group per (dataset, IF, seed, extractor): stage 1 trains 36 times, not 180
    assert len(groups) == 2 * 3 * 3 * 2
    for g in groups:
        keys = {r.cfg.stage1_key() for r in g.runs}
        assert len(keys) == 1 and len({r.cfg.stage1_mode for r in g.runs}) == 1
    assert all(not r.done for r in runs)
    assert all(r.cfg.stage1.epochs == 200 and not r.cfg.reduced for r in runs)


def test_plan_skips_complete_runs_and_checks_imbalance(tmp_path):
    groups = build_plan(["cifar10-lt"], [100], [0], results=str(tmp_path))
    first = groups[0].runs[0]
    first.out.mkdir(parents=True)
    for f in ("metrics.json", "predictions.npz"):
        (first.out / f).write_text("{}")
    # a finished run is recognised by its config (not by its files being there): this one is the planned run's
    (first.out / "config.json").write_text(json.dumps(first.cfg.to_dict(), default=str))
    again = build_plan(["cifar10-lt"], [100], [0], results=str(tmp_path))
    done = [r for g in again for r in g.runs if r.done]
    assert [r.out for r in done] == [first.out]
    assert sum(len(g.pending) for g in again) == _expected_methods() - 1
    from ltbench.errors import LtbenchError
    with pytest.raises(LtbenchError, match="unsupported imbalance"):
        build_plan(["cifar10-lt"], [7], [0], results=str(tmp_path))


def test_split_groups_balances_and_keeps_groups_whole():
    gs = [Group((i,)) for i in range(5)]
    cost = {(0,): 10.0, (1,): 9.0, (2,): 5.0, (3,): 4.0, (4,): 1.0}
    bins = split_groups(gs, 2, lambda g: cost[g.key])
    assert sorted(len(b) for b in bins) == [2, 3]
    loads = sorted(sum(cost[g.key] for g in b) for b in bins)
    assert loads == [14.0, 15.0]
    assert fmt_s(3725) == "1h02m05s" and fmt_s(65) == "1m05s"


def _tiny_grid(tmp_path, methods: list[str] | None, n: int, jobs: int = 1):
    cmd = [sys.executable, str(REPO / "bench.py"), "grid", "--dataset", "cifar10-lt-tiny", "--seed", "0",
           "--epochs", "2", "--stage2-epochs", "1", "--results", str(tmp_path / "res"), "--device", "cpu",
           "--calibration-steps", "2", "--jobs", str(jobs), "--threads", "1", "--deterministic"]
    if methods:
        cmd += ["--method", ",".join(methods)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"grid: {n} runs in 2 stage-1 groups; 0 already complete" in res.stderr
    assert "projected wall time:" in res.stderr and "calibration resnet32" in res.stderr
    assert f"[{n}/{n}]" in res.stderr and "ETA" in res.stderr and "FAILED" not in res.stderr
    folders = sorted((tmp_path / "res" / "runs" / "cifar10-lt-tiny").glob("*/seed0/metrics.json"))
    assert len(folders) == n
    cfg = json.loads((folders[0].parent / "config.json").read_text())
    assert cfg["stage1"]["epochs"] == 2 and cfg["reduced"] is True
    assert cfg["environment"]["cpu_threads"] == 1 and cfg["deterministic"] is True  # --threads, --deterministic
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{n} already complete (skipped), 0 to run" in again.stderr
    assert "nothing to run" in again.stderr and "[1/" not in again.stderr


def test_tiny_grid_runs_end_to_end_and_resumes(tmp_path):
    """Both extractors with two cheap methods (2 + 1 epochs, 2 workers), then a second call skips everything."""
    _tiny_grid(tmp_path, ["ce", "crt"], 4, jobs=2)


@pytest.mark.slow
def test_tiny_grid_every_method(tmp_path):
    """The whole method grid (incl. the SWAG pool) on the tiny set; about 4 minutes on 2 busy cores."""
    _tiny_grid(tmp_path, None, _expected_methods())


def test_unknown_method_in_grid(tmp_path):
    from ltbench.errors import LtbenchError
    with pytest.raises(LtbenchError, match="unknown method"):
        build_plan(["cifar10-lt"], [100], [0], results=str(tmp_path), methods=["magic"])


def test_grid_rejects_bad_jobs(tmp_path):
    from bench import cli
    res = CliRunner().invoke(cli, ["grid", "--dataset", "cifar10-lt-tiny", "--jobs", "0", "--dry-run",
                                   "--results", str(tmp_path)])
    assert res.exit_code == 2 and "--jobs" in res.output


# ------------------------------------------------------------------- one vocabulary with `run` (issue 17)


def _dry(tmp_path, *args: str):
    from bench import cli
    return CliRunner().invoke(cli, ["grid", "--results", str(tmp_path / "res"), "--dry-run", "--calibration-steps",
                                    "0", *args])


def _plan_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  ") and " done  (" in line]


def test_grid_list_options_repeat_or_take_comma_lists(tmp_path):
    """`--seed 0 --seed 1` plans what `--seed 0,1` plans; the same for --dataset, --method and --stage1."""
    a = _dry(tmp_path, "--dataset", "cifar10-lt-tiny", "--dataset", "cifar100-lt-tiny", "--seed", "0", "--seed", "1",
             "--method", "ce", "--method", "crt")
    b = _dry(tmp_path, "--dataset", "cifar10-lt-tiny,cifar100-lt-tiny", "--seed", "0,1", "--method", "ce,crt")
    assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
    # 2 datasets x 2 seeds x 2 extractors = 8 groups of 2 methods
    assert "grid: 16 runs in 8 stage-1 groups" in a.output
    assert _plan_lines(a.output) == _plan_lines(b.output) and len(_plan_lines(a.output)) == 8


def test_grid_stage1_restricts_the_extractors(tmp_path):
    sgd = _dry(tmp_path, "--dataset", "cifar10-lt-tiny", "--seed", "0", "--stage1", "sgd")
    assert sgd.exit_code == 0, sgd.output
    lines = _plan_lines(sgd.output)
    assert len(lines) == 1 and " sgd " in lines[0]
    n_sgd = sum(1 for _, s in method_grid() if s == "sgd")
    assert f"grid: {n_sgd} runs in 1 stage-1 group;" in sgd.output
    assert method_grid(["ce", "srepr"], ["swa"]) == [("ce", "swa"), ("srepr", "swa")]
    assert method_grid(["all"], ["sgd"]) == method_grid(None, ["sgd"])
    # a method named explicitly that runs on none of the chosen extractors is an error, not an empty plan
    bad = _dry(tmp_path, "--dataset", "cifar10-lt-tiny", "--method", "srepr", "--stage1", "sgd")
    assert bad.exit_code == 2 and "--stage1 swa" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_grid_options_go_to_the_methods_that_declare_them(tmp_path):
    """--option follows run's rule: each selected method that declares the key gets it (typed), the others do not;
    a key no selected method declares is an error before any compute."""
    from ltbench.cli.options import options_for_methods
    pairs = method_grid(["ce", "logit_adjust"], ["sgd"])
    per = options_for_methods(("tau=0.5",), sorted({m for m, _ in pairs}))
    groups = build_plan(["cifar10-lt-tiny"], [], [0], results=str(tmp_path), methods=["ce", "logit_adjust"],
                        stage1_modes=["sgd"], method_options=per, deterministic=True)
    cfgs = {r.cfg.method: r.cfg for g in groups for r in g.runs}
    assert set(cfgs) == {"ce", "logit_adjust"}
    assert cfgs["logit_adjust"].method_options["tau"] == 0.5 and "tau" not in cfgs["ce"].method_options
    assert all(c.deterministic for c in cfgs.values())
    bad = _dry(tmp_path, "--dataset", "cifar10-lt-tiny", "--method", "ce", "--option", "tau=0.5")
    assert bad.exit_code == 2 and "--option tau" in bad.stderr and len(bad.stderr.splitlines()) == 1
    typed = _dry(tmp_path, "--dataset", "cifar10-lt-tiny", "--method", "logit_adjust", "--option", "tau=-1")
    assert typed.exit_code == 2 and "tau" in typed.stderr
    ok = _dry(tmp_path, "--dataset", "cifar10-lt-tiny", "--method", "ce,logit_adjust", "--option", "tau=0.5")
    assert ok.exit_code == 0, ok.output
    assert not (tmp_path / "res").exists()  # a dry run writes nothing


def test_grid_quiet_dry_run_still_prints_the_plan(tmp_path):
    r = _dry(tmp_path, "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "ce", "--quiet")
    assert r.exit_code == 0 and "grid: 2 runs in 2 stage-1 groups" in r.output


# ------------------------------------------------------------------------------- live progress (issue 17)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_grid_progress_plain_lines():
    """Not a terminal: one line per finished run ([i/N], its time, elapsed, ETA from the projected work left at the
    pace so far) and, while a run goes on, a `grid: i/N runs done` line each `every_s` seconds (heartbeat)."""
    import io
    from ltbench.grid import GridProgress

    clock, buf = _Clock(), io.StringIO()
    p = GridProgress(4, projected_total=100.0, stream=buf, tty=False, clock=clock, every_s=30)
    p.heartbeat()
    clock.t = 31.0
    p.heartbeat()                                              # 31 s with nothing finished: a line, ETA unknown
    clock.t = 40.0
    p.finished("cifar10-lt-tiny sgd-ce seed0", 40.0, None, projected_s=10.0)
    clock.t = 50.0
    p.heartbeat()                                              # 10 s after the last line: nothing
    clock.t = 80.0
    p.heartbeat()
    clock.t = 90.0
    p.finished("cifar10-lt-tiny sgd-crt seed0", 50.0, "boom", projected_s=40.0)
    p.close()
    # ETA = projected seconds left x (elapsed / projected seconds done): 90 x 40/10 = 360 s; 90 x 80/10 = 720 s;
    # 50 x 90/50 = 90 s
    assert buf.getvalue().splitlines() == [
        "grid: 0/4 runs done, elapsed 31s, ETA ?",
        "[1/4] cifar10-lt-tiny sgd-ce seed0  40.0s  elapsed 40s  ETA 6m00s",
        "grid: 1/4 runs done, elapsed 1m20s, ETA 12m00s",
        "[2/4] cifar10-lt-tiny sgd-crt seed0  FAILED: boom  elapsed 1m30s  ETA 1m30s",
    ]
    assert p.n == 2


def test_grid_heartbeat_says_what_a_silenced_run_is_doing(monkeypatch):
    """Without --verbose a run's own lines are silenced; the heartbeat then names the stage-1 epoch it is at, so
    hours of stage 1 do not read as a stalled "0/6 runs done"."""
    import io
    from ltbench import grid
    from ltbench.progress import Activity

    clock, buf = _Clock(), io.StringIO()
    act = Activity(clock=clock)
    monkeypatch.setattr(grid, "ACTIVITY", act)
    p = grid.GridProgress(6, stream=buf, tty=False, clock=clock, every_s=30)
    act.begin("stage 1 [swa]", 200)
    clock.t = 40.0
    act.update(1)                                  # one epoch in 40 s: 199 x 40 s = 7960 s to go, in the ETA's format
    p.heartbeat()
    act.end()
    clock.t = 80.0
    p.heartbeat()                                              # stage 1 over: the plain line again
    assert buf.getvalue().splitlines() == [
        "grid: 0/6 runs done, elapsed 40s, ETA ?; now stage 1 [swa] 1/200 epochs done, ~2h12m40s to go",
        "grid: 0/6 runs done, elapsed 1m20s, ETA ?",
    ]


def test_grid_progress_without_projection_counts_runs_and_quiet_prints_nothing():
    import io
    from ltbench.grid import GridProgress

    clock, buf = _Clock(), io.StringIO()
    p = GridProgress(3, stream=buf, tty=False, clock=clock)
    clock.t = 20.0
    p.finished("a", 20.0, None)
    assert buf.getvalue().splitlines() == ["[1/3] a  20.0s  elapsed 20s  ETA 40s"]  # 2 runs left x 20 s each
    quiet, qbuf = GridProgress(3, stream=io.StringIO(), tty=False, clock=clock, quiet=True), None
    clock.t = 100.0
    quiet.finished("a", 1.0, None)
    quiet.heartbeat()
    quiet.close()
    assert quiet.stream.getvalue() == "" and quiet.n == 1


def test_grid_progress_on_a_terminal_is_a_bar():
    import io
    from ltbench.grid import GridProgress

    clock, buf = _Clock(), io.StringIO()
    p = GridProgress(2, stream=buf, tty=True, clock=clock)
    clock.t = 5.0
    p.finished("a", 5.0, None)
    p.heartbeat()
    p.close()
    out = buf.getvalue()
    assert p.bar is not None and "[1/2] a  5.0s" in out and "| 1/2 [00:05<00:05" in out and "grid: " in out


def test_grid_subset_seed_names_the_runs_and_is_checked(tmp_path):
    """--subset-seed (as on run): the plan's run folders carry -subset<K>; a fixed subset refuses it; seeds are
    checked like --seed; a data root without the official train pickles is refused before the plan is shown."""
    from test_subset_seed import _write_pickles

    root = tmp_path / "data"
    _write_pickles(root)  # the files a non-zero subset seed draws from (names only matter to the plan)
    r = _dry(tmp_path, "--dataset", "cifar10-lt", "--imbalance", "100", "--seed", "0", "--method", "ce",
             "--stage1", "sgd", "--subset-seed", "3", "--data-root", str(root))
    assert r.exit_code == 0 and "cifar10-lt-if100-subset3 seed0 sgd" in r.output, r.output
    groups = build_plan(["cifar10-lt"], [100], [0], results=str(tmp_path), methods=["ce"], stage1_modes=["sgd"],
                        subset_seed=3, data_root=str(root))
    (run,) = [r for g in groups for r in g.runs]
    assert run.cfg.subset_seed == 3 and run.out == tmp_path / "runs" / "cifar10-lt-if100-subset3" / "sgd-ce" / "seed0"
    tiny = _dry(tmp_path, "--dataset", "cifar10-lt-tiny", "--method", "ce", "--subset-seed", "3")
    assert tiny.exit_code == 2 and "--subset-seed" in tiny.stderr and len(tiny.stderr.splitlines()) == 1
    bad = _dry(tmp_path, "--dataset", "cifar10-lt", "--subset-seed", "-1")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: invalid value for '--subset-seed'")
    npz_only = tmp_path / "npz-only"
    npz_only.mkdir()
    (npz_only / "cifar10_train_lt_if10.npz").write_bytes(b"")  # never opened: the check looks for files only
    refused = _dry(tmp_path, "--dataset", "cifar10-lt", "--imbalance", "100", "--method", "ce", "--stage1", "sgd",
                   "--subset-seed", "3", "--data-root", str(npz_only))
    assert refused.exit_code == 2 and "grid:" not in refused.output, refused.output
    assert "subset seed 3 needs the official train pickles" in refused.stderr
    assert "npz there holds only the seed-0 subsets' images" in refused.stderr


def test_grid_plan_line_says_one_run_in_the_singular(tmp_path):
    r = _dry(tmp_path, "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "crt", "--stage1", "swa")
    assert r.exit_code == 0, r.output
    assert "grid: 1 run in 1 stage-1 group; 0 already complete (skipped), 1 to run; 1 stage-1 training needed" \
        in r.output


# ------------------------------------------------------------------- --time-budget: start only what finishes


def _pending_group(i: int) -> Group:
    from ltbench.grid import PlannedRun
    return Group((i,), [PlannedRun(cfg=None, out=Path(f"run{i}"), done=False)])


def _costs(seconds: dict[int, float]):
    """A projection giving each one-run group ``_pending_group(i)`` the projected ``seconds[i]``."""
    from ltbench.grid import Projection
    return Projection({f"run{i}": s for i, s in seconds.items()})


def test_time_budget_starts_in_plan_order_each_group_that_still_fits():
    from ltbench.grid import PlannedRun, fit_time_budget
    gs = [_pending_group(i) for i in range(5)] + [Group((9,), [PlannedRun(cfg=None, out=Path("x"), done=True)])]
    cost = _costs({0: 10.0, 1: 9.0, 2: 5.0, 3: 4.0, 4: 1.0})
    chosen, left = fit_time_budget([[g] for g in gs], cost, 15.0)
    # 10 fits; 9 would make 19; 5 makes 15 (fits exactly); then 4 and 1 would exceed it; a finished group is neither
    assert [g.key for g in chosen] == [(0,), (2,)] and [g.key for g in left] == [(1,), (3,), (4,)]
    assert fit_time_budget([[g] for g in gs], cost, 0.5) == ([], gs[:5])


def test_time_budget_keeps_a_stack_of_stage1_networks_whole():
    """Under --batched a stack is one unit: the part of it that would fit is not started alone (alone it would
    train at one network's rate, not at its share of the stack's)."""
    from ltbench.grid import fit_time_budget
    gs = [_pending_group(i) for i in range(4)]
    cost = _costs({0: 4.0, 1: 4.0, 2: 4.0, 3: 3.0})
    chosen, left = fit_time_budget([[gs[0], gs[1], gs[2]], [gs[3]]], cost, 10.0)
    assert [g.key for g in chosen] == [(3,)] and [g.key for g in left] == [(0,), (1,), (2,)]


@pytest.mark.parametrize("text, seconds", [("2h30m", 9000), ("90m", 5400), ("5400", 5400), ("45s", 45),
                                           ("1h5m10s", 3910), ("1.5h", 5400), (" 2H ", 7200)])
def test_time_budget_durations(text, seconds):
    from ltbench.grid import parse_duration
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, msg", [("2h30", "give a duration such as 2h30m"), ("soon", "give a duration"),
                                       ("", "give a duration"), ("-5", "give a duration"), ("m", "give a duration"),
                                       ("0", "more than zero"), ("0h0m", "more than zero")])
def test_time_budget_bad_durations_are_refused(text, msg):
    from ltbench.errors import LtbenchError
    from ltbench.grid import parse_time_budget
    with pytest.raises(LtbenchError, match=msg):
        parse_time_budget(text)


def test_projection_counts_only_the_stage1_epochs_a_killed_run_has_left(tmp_path, monkeypatch):
    import torch
    from ltbench.grid import Throughput, project_parts
    from ltbench.paths import stage1_cache_root, stage1_prefix
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    g = build_plan(["cifar100-lt"], [100], [0], results=str(tmp_path / "res"), methods=["ce"],
                   stage1_modes=["sgd"])[0]
    tp = Throughput(train_img_s=400.0, eval_img_s=1600.0, device="cpu", how="test")
    fresh = project_parts(g, 10847, 10000, tp).group(g)
    d = stage1_cache_root() / f"{stage1_prefix(g.runs[0].cfg)}-dabcdef12"
    d.mkdir(parents=True)
    torch.save({"epoch": 150}, d / "ckpt.pt")
    assert g.stage1_epochs_done() == 150
    assert fresh - project_parts(g, 10847, 10000, tp).group(g) == pytest.approx(150 * 10847 / 400.0)
    (d / "ckpt.pt").write_bytes(b"not a checkpoint")  # unreadable: counts as nothing done (the run reports it)
    assert project_parts(g, 10847, 10000, tp).group(g) == pytest.approx(fresh)


def test_projection_shares_fall_to_the_run_that_does_the_work(tmp_path, monkeypatch):
    """Stage 1, the SWA BN recompute and the base features fall to a group's first run, the SWAG pool to its first
    SWAG-based run, one test-set evaluation to every run; the shares sum to the group's projection."""
    from ltbench.grid import Throughput, project_parts
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    g = build_plan(["cifar100-lt"], [100], [0], results=str(tmp_path / "res"), methods=["ce", "crt", "swag", "srepr"],
                   stage1_modes=["swa"])[0]
    names = [r.cfg.method for r in g.pending]
    assert names[0] != "swag" and "swag" in names and "srepr" in names
    tp = Throughput(train_img_s=400.0, eval_img_s=1600.0, device="cpu", how="test")
    shares = project_parts(g, 10847, 10000, tp).runs
    ev = 10000 / 1600                                            # one test-set pass: 6.25 s
    stage1 = 200 * 10847 / 400 + 10847 / 1600                    # 200 epochs + the SWA BN recompute
    features = (10847 + 10000) / 1600
    pool = 8 * (2 * 10847 + 10000) / 1600                        # P = 8 members: BN pass + train + test features
    first_swag = str(next(r.out for r in g.pending if r.cfg.method in ("swag", "srepr")))
    expect = {str(r.out): ev for r in g.pending}
    expect[str(g.pending[0].out)] += stage1 + features
    expect[first_swag] += pool
    assert shares == pytest.approx(expect)
    assert sum(shares.values()) == pytest.approx(project_parts(g, 10847, 10000, tp).group(g))


def test_grid_eta_after_a_groups_first_run_counts_only_the_heads_left(tmp_path, monkeypatch):
    """The first run of a group carries its stage 1: once it is done, the ETA is the few heads left at the pace so
    far, not stage 1 once more for each of them (as an even split of the group's projection read)."""
    import io
    from ltbench.grid import GridProgress, Projection, Throughput, project_parts
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    g = build_plan(["cifar100-lt"], [100], [0], results=str(tmp_path / "res"), methods=["ce", "crt", "lws"],
                   stage1_modes=["sgd"])[0]
    proj = Projection(project_parts(g, 10000, 10000, Throughput(400.0, 1000.0, "cpu", "test")).runs)
    # first run: 200 x 25 s of stage 1 + 20 s of features + 10 s of evaluation; the two others 10 s each
    clock, buf = _Clock(), io.StringIO()
    p = GridProgress(3, projected_total=proj.total([g]), stream=buf, tty=False, clock=clock)
    clock.t = 5030.0                                   # the first run took exactly its projection
    p.finished("first", 5030.0, None, proj.run(g.pending[0]))
    assert p.eta() == pytest.approx(20.0)              # 2 x 10 s at the projected pace
    assert buf.getvalue().splitlines() == ["[1/3] first  5030.0s  elapsed 1h23m50s  ETA 20s"]


def _record_grid(monkeypatch, tmp_path, modes, fail=(), stack=False, methods=("ce", "crt", "lws")):
    """run_grid over tiny groups with the runs and the stack faked: what each finished run and each stack credit
    counted towards the ETA, against the projection it was given."""
    import ltbench.grid as grid_mod
    from ltbench.grid import GridProgress, Projection, Throughput, project_parts
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    groups = build_plan(["cifar10-lt-tiny"], [100], [0], results=str(tmp_path / "res"), methods=list(methods),
                        stage1_modes=modes, epochs=4)
    proj = Projection()
    for g in groups:
        proj.update(project_parts(g, 1000, 500, Throughput(100.0, 500.0, "cpu", "test")))
    before = {k: v for k, v in proj.runs.items()}
    got: list[tuple[str, float]] = []
    monkeypatch.setattr(GridProgress, "finished", lambda self, what, secs, err, p=0.0: got.append((what, p)))
    monkeypatch.setattr(GridProgress, "credit", lambda self, p: got.append(("credit", p)))
    monkeypatch.setattr(GridProgress, "forgo", lambda self, p: got.append(("forgo", p)))
    monkeypatch.setattr(grid_mod, "_run_one", lambda r, echo: (1.0, "boom" if r.cfg.method in fail else None))
    monkeypatch.setattr(grid_mod, "train_stack", lambda unit, echo: [g for g in unit] if stack else [])
    grid_mod.run_grid(groups, 1, proj, lambda s: None, batched=stack, quiet=True)
    return groups, before, got


def test_run_grid_credits_each_run_its_own_share(monkeypatch, tmp_path):
    # 4 epochs x 1000 images at 100 img/s = 40 s of stage 1; features (1000 + 500) / 500 = 3 s; evaluation 1 s
    groups, before, got = _record_grid(monkeypatch, tmp_path, ["sgd"])
    assert [p for _, p in got] == pytest.approx([40 + 3 + 1, 1, 1])
    assert sum(p for _, p in got) == pytest.approx(sum(before.values()))


def test_a_failed_first_run_hands_stage1_on_to_the_next(monkeypatch, tmp_path):
    """The first run failed before its stage 1 existed: the next run trains it, so it is credited with it, and
    the failed run only with its own evaluation (old: all of stage 1 credited to a run that did none of it)."""
    groups, before, got = _record_grid(monkeypatch, tmp_path, ["sgd"], fail=("ce",))
    assert [p for _, p in got] == pytest.approx([1, 40 + 3 + 1, 1])


def test_a_last_run_failing_before_its_stage1_forgoes_that_work(monkeypatch, tmp_path):
    """Nobody trains the stage 1 of a group whose only run failed first: its part leaves the projected total
    rather than counting as done (which would make the pace, and so the ETA, read too fast)."""
    groups, before, got = _record_grid(monkeypatch, tmp_path, ["sgd"], fail=("ce",), methods=("ce",))
    assert got[0] == ("forgo", pytest.approx(40 + 3)) and got[1][1] == pytest.approx(1)


def test_a_worker_reports_its_stack_then_each_run_with_whether_stage1_exists(monkeypatch, tmp_path):
    """--jobs workers: the stack's message comes before any of its runs, and a failed run says whether its stage 1
    existed when it failed (the parent reads it later, when the next run may have trained it)."""
    import ltbench.grid as grid_mod
    from ltbench import runner
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    groups = build_plan(["cifar10-lt-tiny"], [100], [0], results=str(tmp_path / "res"), methods=["ce", "crt"],
                        stage1_modes=["sgd", "swa"], epochs=1)

    class Q(list):
        put = list.append

    def execute(cfg, **kw):
        if cfg.method == "ce":
            raise RuntimeError("boom")
    monkeypatch.setattr(runner, "execute", execute)
    monkeypatch.setattr(grid_mod, "train_stack", lambda unit, echo: list(unit))
    q = Q()
    grid_mod._worker([groups], 0, q, False, batched=True, quiet=True)  # 0: leave this process's threads
    assert q[0] == (grid_mod.STACKED, [str(g.pending[0].out) for g in groups]) and q[-1] is None
    runs = q[1:-1]
    assert [m[0] for m in runs] == [str(r.out) for g in groups for r in g.pending]
    assert [(m[2] is not None, m[3]) for m in runs] == [(True, False), (False, True)] * 2  # nothing cached here


def test_a_stack_counts_stage1_when_it_is_trained(monkeypatch, tmp_path):
    """--batched trains every stage 1 of a stack before any run: its stage-1 work is credited then (old: one
    stage 1 credited per first run, so the pace after the stack read M times too slow)."""
    groups, before, got = _record_grid(monkeypatch, tmp_path, ["sgd", "swa"], stack=True)
    swa_stage1 = 40 + 1000 / 500                                   # + the BN recompute of the SWA average
    assert [p for w, p in got if w == "credit"] == pytest.approx([40, swa_stage1])
    assert got[0][0] == "credit" and got[1][0] == "credit"        # before any run reported
    assert [p for w, p in got if w != "credit"] == pytest.approx([3 + 1, 1, 1, 3 + 1, 1, 1])
    assert sum(p for _, p in got) == pytest.approx(sum(before.values()))


def test_uncalibrated_projection_weighs_stage1_and_a_dry_run_loads_nothing(monkeypatch, tmp_path):
    """--calibration-steps 0 times nothing, yet the ETA still needs stage 1 to outweigh a head: relative weights at
    NOMINAL_THROUGHPUT from the real set sizes. A dry run needs no weights and loads no data."""
    import ltbench.grid as grid_mod
    from ltbench.data.load import load_run_data
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    groups = build_plan(["cifar10-lt-tiny"], [100], [0], results=str(tmp_path / "res"), methods=["ce", "crt"],
                        stage1_modes=["sgd"], epochs=3)
    g = groups[0]
    data = load_run_data(g.runs[0].cfg)
    n_train, n_test = len(data.train_labels), len(data.test_labels)
    proj = grid_mod.project_grid(groups, torch_cpu(), 0, False, 12, lambda s: None)
    assert not proj.calibrated
    first, second = (proj.run(r) for r in g.pending)
    assert first == pytest.approx(3 * n_train + (n_train + n_test) / 3 + n_test / 3)
    assert second == pytest.approx(n_test / 3)

    def boom(cfg):
        raise AssertionError("a dry run loaded data")
    monkeypatch.setattr(grid_mod, "load_run_data", boom)
    empty = grid_mod.project_grid(groups, torch_cpu(), 0, False, 12, lambda s: None, weights=False)
    assert empty.runs == {} and empty.total(groups) == 0.0


def torch_cpu():
    import torch
    return torch.device("cpu")


def _fixed_projection(monkeypatch, seconds: dict[str, float]):
    """Replace the calibrated projection by fixed seconds per extractor, so which groups fit does not depend on
    this machine's speed; returns the list of calls (a refused command must not reach it)."""
    import ltbench.grid as grid_mod
    calls = []

    def fake(groups, dev, steps, batched, stack_max, echo, weights=True):
        calls.append(steps)
        return grid_mod.Projection({str(g.pending[0].out): seconds[g.key[3]] for g in groups if g.pending})
    monkeypatch.setattr(grid_mod, "project_grid", fake)
    return calls


def test_grid_time_budget_lists_what_waits_and_is_checked_before_compute(tmp_path, monkeypatch):
    from bench import cli
    calls = _fixed_projection(monkeypatch, {"sgd": 600.0, "swa": 3000.0})
    base = ["grid", "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "ce", "--epochs", "2",
            "--results", str(tmp_path / "res"), "--device", "cpu", "--threads", "1", "--dry-run"]
    res = CliRunner().invoke(cli, base + ["--time-budget", "61m"])  # 60 min of work + the planning's seconds
    assert res.exit_code == 0, res.output
    assert "time budget 1h01m00s: 2 of 2 pending groups fit" in res.stderr and "left for a later run" not in res.stderr
    res = CliRunner().invoke(cli, base + ["--time-budget", "30m"])
    assert res.exit_code == 0, res.output
    assert "1 of 2 pending groups fit (projected 10m00s)" in res.stderr
    assert "left for a later run: cifar10-lt-tiny seed0 swa (projected 50m00s)" in res.stderr
    res = CliRunner().invoke(cli, base + ["--time-budget", "5m"])
    assert "0 of 2 pending groups fit" in res.stderr and "nothing started" in res.stderr
    n = len(calls)
    for bad, msg in ((["--calibration-steps", "0", "--time-budget", "2h"], "needs the projection"),
                     (["--time-budget", "soon"], "give a duration"), (["--time-budget", "0"], "more than zero")):
        res = CliRunner().invoke(cli, base + bad)
        assert res.exit_code == 2 and msg in res.output
    assert len(calls) == n  # refused before the projection (and before any training)


def test_grid_time_budget_counts_the_time_planning_and_calibration_spent(tmp_path, monkeypatch):
    """The budget runs from the command's start: a calibration that took 500 s leaves 15m - 500s = 6m40s, in which
    the 10-minute SGD group no longer fits (old: fitted against the whole 15 minutes, then cut off)."""
    import time
    import ltbench.grid as grid_mod
    from bench import cli
    _fixed_projection(monkeypatch, {"sgd": 600.0, "swa": 3000.0})
    project = grid_mod.project_grid
    real = time.perf_counter

    def slow_calibration(*a, **k):
        monkeypatch.setattr(time, "perf_counter", lambda: real() + 500.0)
        return project(*a, **k)
    monkeypatch.setattr(grid_mod, "project_grid", slow_calibration)
    res = CliRunner().invoke(cli, ["grid", "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "ce",
                                   "--epochs", "2", "--results", str(tmp_path / "res"), "--device", "cpu",
                                   "--threads", "1", "--dry-run", "--time-budget", "15m"])
    monkeypatch.setattr(time, "perf_counter", real)
    assert res.exit_code == 0, res.output
    assert "0 of 2 pending groups fit" in res.stderr and "in the 6m" in res.stderr, res.stderr


def test_grid_time_budget_runs_only_what_fits_and_says_so_under_quiet(tmp_path, monkeypatch):
    from bench import cli
    _fixed_projection(monkeypatch, {"sgd": 60.0, "swa": 3000.0})
    res = CliRunner().invoke(cli, ["grid", "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "ce",
                                   "--epochs", "1", "--stage2-epochs", "1", "--results", str(tmp_path / "res"),
                                   "--device", "cpu", "--threads", "1", "--quiet", "--time-budget", "10m"])
    assert res.exit_code == 0, res.output
    runs = tmp_path / "res" / "runs" / "cifar10-lt-tiny"
    assert (runs / "sgd-ce" / "seed0" / "metrics.json").is_file() and not (runs / "swa-ce").exists()
    assert "left for a later run: cifar10-lt-tiny seed0 swa" in res.stderr
    assert "grid finished: 1/1 runs" in res.stderr and "1 group left for a later run (time budget)" in res.stderr
