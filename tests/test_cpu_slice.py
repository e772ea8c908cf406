"""benchmarks/cpu_slice.py: which pending networks a CPU session starts, and in which thread layout."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("cpu_slice", REPO / "benchmarks" / "cpu_slice.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["cpu_slice"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


cs = _load()


def _net(work: float, protocol: int = 4, runs: int = 6, seed: int = 0, stage1: str = "sgd"):
    return cs.Network("cifar10-lt", 100, seed, stage1, work, 0.0, runs, protocol)


def test_a_network_costs_its_work_at_the_rate_plus_its_heads():
    n = cs.Network("cifar10-lt", 100, 0, "sgd", 1000.0, 2000.0, 6, 4)
    assert n.seconds(10.0) == pytest.approx(100.0 + 2000.0 * 0.005)  # 0.005 s per run per training image


def test_single_lane_runs_networks_one_after_the_other_and_skips_what_does_not_fit():
    big, a, b = _net(5000.0, seed=0), _net(1000.0, seed=1), _net(1000.0, seed=2)
    s = cs.fit([big, a, b], 1, 10.0, 250.0, "single")  # big 500 s > 250: left; a, b 100 s each: 200 s
    assert s.lanes == [[a, b]] and s.left == [big] and s.finish_s == [pytest.approx(200.0)]


def test_pair_lanes_share_the_networks_and_each_finishes_at_its_own_sum():
    nets = [_net(1000.0, seed=k) for k in range(3)]
    s = cs.fit(nets, 2, 5.0, 450.0, "pair")  # 200 s each: lanes 0, 1, then lane 0 again at 400 s
    assert s.lanes == [[nets[0], nets[2]], [nets[1]]]
    assert s.finish_s == [pytest.approx(400.0), pytest.approx(200.0)] and s.left == []


def test_choose_takes_the_layout_that_finishes_more_protocol_runs():
    a, b = _net(1000.0, seed=0), _net(1000.0, seed=1)
    # one 2-thread process at 10 img/s: a at 100 s, b at 200 s > 180; two 1-thread at 6 img/s each: both at 167 s
    assert cs.choose([a, b], 10.0, 6.0, 180.0).layout == "pair"
    # two 1-thread at 4 img/s each: 250 s > 240, nothing fits; one 2-thread: both by 200 s
    s = cs.choose([a, b], 10.0, 4.0, 240.0)
    assert s.layout == "single" and s.networks == [a, b] and s.protocol_runs == 8


def test_choose_breaks_a_tie_in_runs_by_the_sooner_finish():
    a, b = _net(1000.0, seed=0), _net(1000.0, seed=1)
    assert cs.choose([a, b], 10.0, 6.0, 250.0).layout == "pair"   # both fit either way: 167 s beats 200 s
    assert cs.choose([a, b], 10.0, 4.0, 300.0).layout == "single"  # 200 s beats 250 s


def test_the_empty_store_plans_the_issues_180_protocol_runs_in_36_networks(tmp_path, monkeypatch):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    nets = cs.pending_networks(str(tmp_path / "results"), None, [0, 1, 2])
    assert len(nets) == 36 and sum(n.protocol_runs for n in nets) == 180
    assert [(n.dataset, n.imbalance) for n in nets[::6]] == [  # issue 14's order
        ("cifar100-lt", 100), ("cifar100-lt", 50), ("cifar100-lt", 10), ("cifar10-lt", 100), ("cifar10-lt", 50),
        ("cifar10-lt", 10)]
    first = nets[0]  # CIFAR-100-LT IF 100, seed 0, SGD: 10,847 images (LDAM-DRW's subset), 6 runs
    assert (first.dataset, first.imbalance, first.seed, first.stage1, first.runs) == ("cifar100-lt", 100, 0, "sgd", 6)
    # 200 epochs of training, base features of train + test and six evaluations at a third of a training image each
    assert first.work == pytest.approx(200 * 10847 + (10847 + 10000) / 3 + 6 * 10000 / 3)
    assert first.head_images == 6 * 10847
    swa = nets[1]  # + the BN recompute of the SWA average and the 8-member SWAG pool; 8 runs
    assert swa.stage1 == "swa" and swa.runs == 8 and swa.protocol_runs == 6
    assert swa.work == pytest.approx(200 * 10847 + (10847 + 10847 + 10000 + 8 * 10000 + 8 * (2 * 10847 + 10000)) / 3)


def test_probe_rates_take_the_precision_a_run_resolves_to_and_the_slower_of_the_pair():
    probe = {"cpu_native_bf16": True, "one_process_2_threads": {"bf16": 460.0, "fp32": 300.0},
             "two_processes_1_thread_bf16": {"each": [259.0, 300.0]},
             "two_processes_1_thread_fp32": {"each": [177.0, 181.0]}}
    assert cs.probe_rates(probe, 1.0) == (460.0, 259.0, "bf16")
    assert cs.probe_rates({**probe, "cpu_native_bf16": False}, 2.0) == (150.0, 88.5, "fp32")


def test_seconds_until_the_next_hh_mm():
    now = dt.datetime(2026, 12, 4, 1, 0, 30, tzinfo=dt.timezone.utc)
    assert cs.seconds_until("04:04", now) == 3 * 3600 + 4 * 60 - 30
    late = dt.datetime(2026, 12, 4, 22, 0, 0, tzinfo=dt.timezone.utc)
    assert cs.seconds_until("02:15", late) == 4 * 3600 + 15 * 60  # after midnight: tomorrow
    with pytest.raises(ValueError, match="already past"):  # a session's end just passed is not a day's budget
        cs.seconds_until("00:30", now)


def test_a_lane_is_one_resumable_grid_per_network_in_order():
    a, b = _net(1.0, seed=0, stage1="swa"), _net(1.0, seed=1)
    cmds = [shlex.split(c) for c in cs.lane_command([a, b], 2, "results", "../shared/data", "py").split("; ")]
    assert [c[c.index("--seed") + 1] for c in cmds] == ["0", "1"]
    assert [c[c.index("--stage1") + 1] for c in cmds] == ["swa", "sgd"]
    assert all(c[:3] == ["py", "bench.py", "grid"] and c[c.index("--threads") + 1] == "2"
               and c[c.index("--results") + 1] == "results" for c in cmds)


def _probe(tmp_path, single: float, pair: float) -> Path:
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"cpu_native_bf16": False, "one_process_2_threads": {"fp32": single},
                                 "two_processes_1_thread_fp32": {"each": [pair, pair]}}))
    return probe


def _end(**delta) -> str:
    """The HH:MM (UTC) ``delta`` from now, as --until takes it."""
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(**delta)).strftime("%H:%M")


def test_main_plans_without_starting_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cs, "HEAD_S_PER_IMAGE", 0.0)
    monkeypatch.chdir(REPO)
    assert cs.main(["--until", _end(hours=3), "--probe", str(_probe(tmp_path, 1e9, 1.0)),
                    "--results", str(tmp_path / "r"),
                    "--logs", str(tmp_path / "logs"), "--slack", "1"]) == 0
    out = capsys.readouterr().out
    # at 1e9 img/s (and no head time) everything fits in one lane; at 1 img/s nothing fits in a pair
    assert "36 pending networks; layout single: 36 fit, 180 protocol runs" in out
    assert not (tmp_path / "logs").exists()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lanes outlive the planner
def test_start_launches_one_process_per_lane_and_the_committer(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cs, "HEAD_S_PER_IMAGE", 0.0)
    monkeypatch.chdir(REPO)
    rec, fake = tmp_path / "calls.txt", tmp_path / "fakepy"
    fake.write_text(f'#!/bin/sh\necho "$LTBENCH_CACHE $*" >> {rec}\n')
    fake.chmod(0o755)
    probe = _probe(tmp_path, 1e8, 1e9)  # a pair at 1e9 img/s each beats one process at 1e8: two lanes
    store = tmp_path / "r"
    assert cs.main(["--until", _end(hours=3), "--probe", str(probe), "--results", str(store),
                    "--logs", str(tmp_path / "logs"),
                    "--slack", "1", "--python", str(fake), "--start"]) == 0
    assert "layout pair: 36 fit" in capsys.readouterr().out
    for _ in range(1200):  # the lanes and the committer are detached: wait (up to 60 s) for their 36 + 1 calls
        lines = rec.read_text().splitlines() if rec.exists() else []
        if len(lines) >= 37:
            break
        time.sleep(0.05)
    assert len(lines) == 37 and all(ln.startswith(str(tmp_path / "cache") + " ") for ln in lines)
    grids = [ln.split()[1:] for ln in lines if " bench.py grid " in f" {ln} "]
    assert len(grids) == 36 and all(g[g.index("--threads") + 1] == "1" and g[g.index("--results") + 1] == str(store)
                                    for g in grids)
    assert {(g[g.index("--seed") + 1], g[g.index("--stage1") + 1]) for g in grids} == {
        (str(k), m) for k in range(3) for m in ("sgd", "swa")}
    committer = [ln for ln in lines if "commit_runs.py" in ln]
    assert len(committer) == 1 and committer[0].endswith(f"--results {store} --regenerate")
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "commit_runs.log", "lane0.log", "lane1.log", "slice.json", "slice.lock"]
    rec = json.loads((tmp_path / "logs" / "slice.json").read_text())
    assert rec["layout"] == "pair" and len(rec["lanes"]) == 2 and len(rec["networks"]) == 36
    assert "cifar100-lt IF100 seed0 sgd" in rec["networks"] and isinstance(rec["committer"], int)


def _fake_lane(tmp_path):
    """A live process whose command line reads like a lane's (``sh -c '... bench.py grid ...'``)."""
    import subprocess
    return subprocess.Popen(["sh", "-c", "sleep 60; : bench.py grid"], stdin=subprocess.DEVNULL)


def test_a_second_start_is_refused_while_the_first_slices_lanes_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    logs = tmp_path / "logs"
    logs.mkdir()
    lane = _fake_lane(tmp_path)
    try:
        (logs / "slice.json").write_text(json.dumps({"started": "2026-12-04 03:55 UTC", "lanes": [lane.pid],
                                                     "networks": ["cifar10-lt IF100 seed0 sgd"]}))
        args = ["--until", _end(hours=3), "--probe", str(_probe(tmp_path, 1e9, 1.0)), "--results",
                str(tmp_path / "r"), "--logs", str(logs), "--python", "/bin/false", "--seeds", "0"]
        assert cs.main(args + ["--start"]) == 2
        err = capsys.readouterr().err
        assert f"pid {lane.pid}" in err and "cifar10-lt IF100 seed0 sgd" in err and "kill -- -PID" in err
        assert sorted(p.name for p in logs.iterdir()) == ["slice.json"]  # nothing started
        assert cs.main(args) == 0  # a plan alone still goes, with a note that it counts those networks again
        out, err = capsys.readouterr()
        assert "still running" in err and "layout single" in out
    finally:
        lane.kill()
        lane.wait()
    assert cs.running_slice(logs) is None  # once its lanes are gone, the record no longer blocks a start


def test_a_recycled_pid_or_a_foreign_record_is_not_a_running_slice(tmp_path):
    (tmp_path / "slice.json").write_text(json.dumps({"lanes": [os.getpid()]}))  # alive, but pytest, not a lane
    assert cs.running_slice(tmp_path) is None
    for junk in ("not json", "[1, 2]", '{"lanes": ["x"]}', '{"lanes": null}'):
        (tmp_path / "slice.json").write_text(junk)
        assert cs.running_slice(tmp_path) is None
    assert cs.running_slice(tmp_path / "none") is None
    lane = _fake_lane(tmp_path)
    try:  # odd network names in a live slice's record are shown, not a crash
        (tmp_path / "slice.json").write_text(json.dumps({"lanes": [lane.pid], "networks": [1, None]}))
        assert cs.running_slice(tmp_path)["networks"] == ["1", "None"]
    finally:
        lane.kill()
        lane.wait()


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash")
def test_a_lane_whose_shell_execd_its_last_command_is_still_seen(tmp_path):
    """bash runs the last command of a -c list in its own place: the pid's command line is then python's, with
    'bench.py' and 'grid' as separate arguments."""
    import subprocess
    lane = subprocess.Popen(["/bin/bash", "-c", f"true; {shlex.quote(sys.executable)} -c "
                             "'import time; time.sleep(60)' bench.py grid --seed 0"], stdin=subprocess.DEVNULL)
    try:
        cmdline = Path(f"/proc/{lane.pid}/cmdline")
        for _ in range(200):  # until bash has exec'd python (up to 10 s; mid-exec the command line reads empty)
            if b"\0bench.py\0grid\0" in cmdline.read_bytes():  # bash's own has them inside its -c string
                break
            time.sleep(0.05)
        assert b"\0bench.py\0grid\0" in cmdline.read_bytes()  # the case this test is about
        (tmp_path / "slice.json").write_text(json.dumps({"lanes": [lane.pid]}))
        assert cs.running_slice(tmp_path)["alive"] == [lane.pid]
    finally:
        lane.kill()
        lane.wait()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lanes outlive the planner
def test_the_last_slices_committer_still_running_is_kept_not_doubled(tmp_path, monkeypatch, capsys):
    import subprocess
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cs, "HEAD_S_PER_IMAGE", 0.0)
    monkeypatch.chdir(REPO)
    rec, fake = tmp_path / "calls.txt", tmp_path / "fakepy"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {rec}\n')
    fake.chmod(0o755)
    logs, store = tmp_path / "logs", str(tmp_path / "r")
    logs.mkdir()
    committer = subprocess.Popen(["sh", "-c", "sleep 60; : commit_runs.py"], stdin=subprocess.DEVNULL)
    try:  # its lanes are gone (pid 1 is no lane), its committer for this store is not
        (logs / "slice.json").write_text(json.dumps({"lanes": [1], "committer": committer.pid, "results": store}))
        assert cs.main(["--until", _end(hours=3), "--probe", str(_probe(tmp_path, 1e9, 1.0)), "--results", store,
                        "--logs", str(logs), "--slack", "1", "--python", str(fake), "--seeds", "0", "--start"]) == 0
        assert f"still runs (pid {committer.pid})" in capsys.readouterr().out
        for _ in range(1200):  # the 12 networks of seed 0 in one lane (up to 60 s)
            lines = rec.read_text().splitlines() if rec.exists() else []
            if len(lines) >= 12:
                break
            time.sleep(0.05)
        assert len(lines) == 12 and not any("commit_runs.py" in ln for ln in lines)
        assert json.loads((logs / "slice.json").read_text())["committer"] == committer.pid
        assert "commit_runs.log" not in {p.name for p in logs.iterdir()}
    finally:
        committer.kill()
        committer.wait()
    # for another store it is not that store's committer: a new one is started
    (logs / "slice.json").write_text(json.dumps({"lanes": [1], "committer": os.getpid(), "results": "elsewhere"}))
    assert cs.running_committer(logs, store) is None


def test_it_refuses_to_run_outside_the_repository_root_before_any_probe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    end = _end(hours=3)
    for extra in ([], ["--start"]):  # a plan read from elsewhere would see ./results as an empty store
        assert cs.main(["--until", end, "--logs", str(tmp_path / "logs"), "--python", "/bin/false", *extra]) == 2
        assert "repository root" in capsys.readouterr().err and not (tmp_path / "logs").exists()


def test_an_end_already_past_is_refused_before_any_probe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert cs.main(["--until", _end(minutes=-2), "--logs", str(tmp_path / "logs"), "--start"]) == 2
    assert "already past" in capsys.readouterr().err and not (tmp_path / "logs").exists()


def test_the_reserve_is_taken_off_the_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    # at a training rate of 1e12 img/s only the heads count: the first network (CIFAR-100-LT IF 100, SGD) has
    # 6 x 0.005 x 10,847 s = 5.4 min of them, every other network more
    args = ["--until", _end(minutes=62),  # 61-62 min away
            "--probe", str(_probe(tmp_path, 1e12, 1.0)), "--results", str(tmp_path / "r"),
            "--seeds", "0"]
    assert cs.main(args + ["--reserve", "55"]) == 0  # 6-7 min left: the first network fits, no second one
    out = capsys.readouterr().out
    assert "layout single: 1 fit" in out and "cifar100-lt IF100 seed0 sgd" in out
    assert cs.main(args + ["--reserve", "58"]) == 0  # 3-4 min left: nothing fits
    assert "layout single: 0 fit" in capsys.readouterr().out


def test_the_plan_reads_the_cache_the_lanes_use(tmp_path, monkeypatch):
    monkeypatch.delenv("LTBENCH_CACHE", raising=False)
    monkeypatch.setattr(cs, "DEFAULT_CACHE", tmp_path / "devcache")
    monkeypatch.chdir(REPO)
    seen = []
    real = cs.pending_networks
    monkeypatch.setattr(cs, "pending_networks", lambda *a, **k: seen.append(os.environ.get("LTBENCH_CACHE")) or
                        real(*a, **k))
    assert cs.main(["--until", _end(hours=3), "--probe", str(_probe(tmp_path, 1.0, 1.0)),
                    "--results", str(tmp_path / "r"),
                    "--seeds", "0"]) == 0
    assert seen == [str(tmp_path / "devcache")]


def test_a_cached_stage_1_is_priced_as_its_heads_and_evaluations(tmp_path, monkeypatch):
    from ltbench.grid import build_plan
    from ltbench.paths import stage1_prefix
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    results = str(tmp_path / "r")
    cfg = build_plan(["cifar10-lt"], [100], [0], results=results)[0].runs[0].cfg  # seed 0, SGD
    d = tmp_path / "cache" / "stage1" / f"{stage1_prefix(cfg)}-dabc12345"
    d.mkdir(parents=True)
    (d / "final.pt").write_bytes(b"")  # a finished stage 1 (only its presence is read by the plan)
    sgd, swa = cs.pending_networks(results, None, [0], order=[("cifar10-lt", 100)])
    assert sgd.stage1 == "sgd" and sgd.work == pytest.approx((12406 + 10000) / 3 + 6 * 10000 / 3)  # no training
    # its SWA twin is not cached: 200 epochs, BN recompute, features, 8 evaluations, the 8-member SWAG pool
    assert swa.work == pytest.approx(200 * 12406 + (2 * 12406 + 10000 + 8 * 10000 + 8 * (2 * 12406 + 10000)) / 3)
    # the test images priced are the dataset's own count, whatever it is
    from ltbench.registry import get_dataset
    monkeypatch.setattr(type(get_dataset("cifar10-lt")), "test_size", 4000)
    sgd = cs.pending_networks(results, None, [0], order=[("cifar10-lt", 100)])[0]
    assert sgd.work == pytest.approx((12406 + 4000) / 3 + 6 * 4000 / 3)


def test_a_group_the_grid_would_refuse_is_not_planned(tmp_path, monkeypatch):
    import ltbench.grid as lg
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    real = lg.build_plan

    def with_conflict(*a, **k):
        groups = real(*a, **k)
        groups[0].runs[1].conflict = "finished with another config"
        return groups
    monkeypatch.setattr(lg, "build_plan", with_conflict)
    refused: list[str] = []
    nets = cs.pending_networks(str(tmp_path / "r"), None, [0], order=[("cifar10-lt", 100)], refused=refused)
    assert refused == ["cifar10-lt IF100 seed0 sgd"] and [(n.seed, n.stage1) for n in nets] == [(0, "swa")]


def test_a_process_that_may_use_other_than_2_cores_is_warned_about(tmp_path, monkeypatch, capsys):
    import ltbench.data.file_lists as fl
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    args = ["--until", _end(hours=3), "--probe", str(_probe(tmp_path, 1.0, 1.0)), "--results", str(tmp_path / "r"),
            "--seeds", "0"]
    for cores, warned in ((4, True), (2, False)):
        monkeypatch.setattr(fl, "usable_cpus", lambda: cores)
        assert cs.main(args) == 0
        assert ("are for 2 cores; this process may use 4" in capsys.readouterr().err) == warned


def test_earliest_until_rounds_the_work_and_the_reserve_up_to_a_whole_minute():
    now = dt.datetime(2026, 12, 6, 12, 0, 30, tzinfo=dt.timezone.utc)
    assert cs.earliest_until(now, 3600, 40) == "13:41"  # 13:40:30 → 13:41
    assert cs.earliest_until(now.replace(second=0), 600, 0) == "12:10"  # already whole: kept
    assert cs.earliest_until(now.replace(hour=23), 3600, 0) == "00:01"  # past midnight, as --until takes it
    assert cs.seconds_until("00:01", now.replace(hour=23)) == 3630  # ... which reads it as tomorrow
    assert cs.earliest_until(now, 11 * 3600, 61) is None  # over 12 h away: no --until can say it


def test_the_plan_names_the_until_that_would_fit_the_quickest_network_left(tmp_path, monkeypatch, capsys):
    frozen = dt.datetime(2026, 12, 6, 12, 0, 30, tzinfo=dt.timezone.utc)

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return frozen

    monkeypatch.setattr(cs, "dt", type("dt", (), {"datetime": Clock, "timedelta": dt.timedelta,
                                                  "timezone": dt.timezone}))
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    # at 1e12 img/s only the heads count: the quickest network, CIFAR-100-LT IF 100 SGD, has 6 x 0.005 x 10,847 s
    # = 325.41 s of them; 12:00:30 + 325.41 s + 10 min reserve = 12:15:55.41, so 12:16 is the earliest end
    args = ["--probe", str(_probe(tmp_path, 1e12, 1.0)), "--results", str(tmp_path / "r"), "--seeds", "0",
            "--reserve", "10"]
    assert cs.main(["--until", "12:12"] + args) == 0
    out = capsys.readouterr().out
    assert "layout single: 0 fit" in out
    assert "quickest left: cifar100-lt IF100 seed0 sgd" in out and "--until of 12:16 UTC" in out
    assert "later: 6 more" in out  # 12 networks for one seed, six listed
    assert cs.main(["--until", "12:16"] + args) == 0  # the named end fits it ...
    assert "layout single: 1 fit" in capsys.readouterr().out
    assert cs.main(["--until", "12:15"] + args) == 0  # ... and a minute less does not
    assert "layout single: 0 fit" in capsys.readouterr().out


def test_a_start_is_refused_while_another_start_holds_the_lock(tmp_path, monkeypatch, capsys):
    import fcntl
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setattr(cs, "LOCK_WAIT_S", 0.3)
    with open(logs / "slice.lock", "w") as held:  # another --start, stuck between its check and its slice.json
        fcntl.flock(held, fcntl.LOCK_EX)
        assert cs.main(["--until", _end(hours=3), "--probe", str(_probe(tmp_path, 1e9, 1.0)), "--results",
                        str(tmp_path / "r"), "--logs", str(logs), "--python", "/bin/false", "--seeds", "0",
                        "--start"]) == 2
    assert "has held" in capsys.readouterr().err
    assert sorted(p.name for p in logs.iterdir()) == ["slice.lock"]  # no lane, no committer, no record


def test_a_slice_started_while_this_one_probed_is_seen_under_the_lock(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    logs = tmp_path / "logs"
    logs.mkdir()
    lane = _fake_lane(tmp_path)
    rates = cs.probe_rates

    def probe_while_another_starts(*args):  # after this --start's first check, before its lanes
        (logs / "slice.json").write_text(json.dumps({"started": "2026-12-06 21:00 UTC", "lanes": [lane.pid],
                                                     "networks": ["cifar10-lt IF100 seed2 swa"]}))
        return rates(*args)

    monkeypatch.setattr(cs, "probe_rates", probe_while_another_starts)
    try:
        assert cs.main(["--until", _end(hours=3), "--probe", str(_probe(tmp_path, 1e9, 1.0)), "--results",
                        str(tmp_path / "r"), "--logs", str(logs), "--python", "/bin/false", "--seeds", "0",
                        "--start"]) == 2
    finally:
        lane.kill()
        lane.wait()
    err = capsys.readouterr().err
    assert "began while this one planned" in err and f"pid {lane.pid}" in err
    assert sorted(p.name for p in logs.iterdir()) == ["slice.json", "slice.lock"]  # nothing started


def test_the_record_says_when_the_lanes_started_not_when_the_probe_began(tmp_path, monkeypatch, capsys):
    clock = {"now": dt.datetime(2026, 12, 6, 12, 0, 30, tzinfo=dt.timezone.utc)}

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return clock["now"]

    monkeypatch.setattr(cs, "dt", type("dt", (), {"datetime": Clock, "timedelta": dt.timedelta,
                                                  "timezone": dt.timezone}))
    rates = cs.probe_rates

    def slow_probe(*args):  # the probe (here: reading its rates) takes three minutes
        clock["now"] += dt.timedelta(minutes=3)
        return rates(*args)

    monkeypatch.setattr(cs, "probe_rates", slow_probe)
    monkeypatch.setattr(cs, "HEAD_S_PER_IMAGE", 0.0)
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    logs = tmp_path / "logs"
    assert cs.main(["--until", "15:00", "--probe", str(_probe(tmp_path, 1e9, 1.0)), "--results", str(tmp_path / "r"),
                    "--logs", str(logs), "--python", "/bin/true", "--seeds", "0", "--start"]) == 0
    assert json.loads((logs / "slice.json").read_text())["started"] == "2026-12-06 12:03 UTC"


def test_the_quickest_network_left_that_fits_alone_is_said_to_need_a_session_of_its_own(tmp_path, monkeypatch,
                                                                                          capsys):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    # heads only (1e12 img/s): 7-8 min of budget takes the first network (5.4 min); the quickest after it, CIFAR-10-LT
    # IF 100 SGD (6 x 0.005 x 12,406 s = 6.2 min), would fit that budget alone, only not after the first
    assert cs.main(["--until", _end(minutes=62), "--probe", str(_probe(tmp_path, 1e12, 1.0)), "--results",
                    str(tmp_path / "r"), "--seeds", "0", "--reserve", "54"]) == 0
    out = capsys.readouterr().out
    assert "layout single: 1 fit" in out
    line = next(ln for ln in out.splitlines() if "quickest left" in ln)
    assert "fits a session of its own" in line and "--until of" not in line


def test_a_failed_start_stops_the_lanes_it_started_and_leaves_no_record(tmp_path, monkeypatch):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cs, "HEAD_S_PER_IMAGE", 0.0)
    monkeypatch.chdir(REPO)
    fake = tmp_path / "fakepy"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)

    def committer_check_fails(*args):  # after the lanes are up, before the record
        raise OSError("disk full")

    monkeypatch.setattr(cs, "running_committer", committer_check_fails)
    started: list[int] = []
    spawn = cs.spawn
    monkeypatch.setattr(cs, "spawn", lambda *a, **k: started.append(spawn(*a, **k)) or started[-1])
    logs = tmp_path / "logs"
    with pytest.raises(OSError, match="disk full"):
        cs.main(["--until", _end(hours=3), "--probe", str(_probe(tmp_path, 1e9, 1.0)), "--results",
                 str(tmp_path / "r"), "--logs", str(logs), "--python", str(fake), "--seeds", "0", "--start"])
    assert len(started) == 1 and not (logs / "slice.json").exists()
    for _ in range(200):  # the lane's group was sent SIGTERM: gone within 10 s
        try:
            os.kill(started[0], 0)
            if not Path(f"/proc/{started[0]}/cmdline").read_bytes():  # a zombie: it has exited
                break
        except OSError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"lane {started[0]} still runs")


def test_a_probe_taken_now_is_named_so_a_re_plan_can_reuse_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    ran: list[list[str]] = []

    def fake_probe(cmd, **kw):  # step_probe.py writes its JSON to --out
        ran.append(cmd)
        out = Path(cmd[cmd.index("--out") + 1])
        out.write_text(_probe(tmp_path, 1e12, 1.0).read_text())

    monkeypatch.setattr(cs.subprocess, "run", fake_probe)
    logs = tmp_path / "logs"
    assert cs.main(["--until", _end(hours=3), "--results", str(tmp_path / "r"), "--logs", str(logs),
                    "--seeds", "0"]) == 0
    assert len(ran) == 1 and ran[0][ran[0].index("--steps") + 1] == "40"
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("probe: "))
    path = Path(line.split()[1])
    assert path.parent == logs and path.is_file() and f"--probe {path}" in line
    assert cs.main(["--until", _end(hours=3), "--probe", str(path), "--results", str(tmp_path / "r"),
                    "--logs", str(logs), "--seeds", "0"]) == 0  # the named file plans again, with no new probe
    assert len(ran) == 1
