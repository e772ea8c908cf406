"""Store and report edge cases of issue 15: each is one error (exit 2) or correct behaviour.

The leaderboard never overwrites a README.md outside a results store; `results check` on a missing folder is an
error and `--tol nan` is refused; the audit cross-checks `reduced` against the epochs in the log and the protocol;
seeds are non-negative and below 2^32 before any compute; an unstable stage 2 is flagged and the flag audited."""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import bench
from ltbench.audit import LOSS_RISE_BOUND, NLL_BOUND, check_run, schedule_problems, stability_flags
from ltbench.cli.options import check_seed
from report_fixtures import make_run


def _bench(*args: str):
    return CliRunner().invoke(bench.cli, list(args))


def _usage_error(r, *phrases: str) -> None:
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output
    err = [line for line in r.output.splitlines() if line.lower().startswith("error")]
    assert len(err) == 1, r.output
    for p in phrases:
        assert p in err[0], (p, err[0])


# ------------------------------------------------------------------------------------------------ leaderboard


def test_leaderboard_refuses_a_folder_without_runs_and_leaves_its_readme(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# my project\n\nhand-written\n")
    r = _bench("leaderboard", "--results", str(tmp_path), "--no-plots")
    _usage_error(r, "has no runs/ folder", "README.md is left alone")
    assert readme.read_text() == "# my project\n\nhand-written\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # no tables/, plots/ either


# ------------------------------------------------------------------------------------------------ results check


def test_results_check_on_a_missing_folder_is_an_error(tmp_path):
    _usage_error(_bench("results", "check", "--results", str(tmp_path / "typo")), "does not exist", "typo")


@pytest.mark.parametrize("tol", ["nan", "-1e-6", "inf", "abc"])
def test_results_check_refuses_a_tolerance_that_is_not_a_finite_non_negative_number(tmp_path, tol):
    make_run(tmp_path, "ce", "sgd", 0, 60.0)
    _usage_error(_bench("results", "check", "--results", str(tmp_path), "--tol", tol), "--tol")
    assert _bench("results", "check", "--results", str(tmp_path), "--tol", "0").exit_code == 0


# ------------------------------------------------------------------------------------------------ reduced flag


def _log(stage1_epochs: int, stage2_epochs: int) -> list[dict]:
    return ([{"epoch": e, "stage": 1, "loss": 2.0 / e} for e in range(1, stage1_epochs + 1)]
            + [{"epoch": e, "stage": 2, "loss": 1.0 / e} for e in range(1, stage2_epochs + 1)])


def _rewrite(d, config=None, log=None) -> None:
    if config is not None:
        (d / "config.json").write_text(json.dumps(config))
    if log is not None:
        (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))


def test_editing_reduced_to_false_fails_the_audit_and_results_check(tmp_path):
    d, _ = make_run(tmp_path, "ce", "sgd", 0, 60.0, reduced=True)  # stage 1: 10 of the protocol's 200 epochs
    assert check_run(d) == []
    cfg = json.loads((d / "config.json").read_text())
    _rewrite(d, dict(cfg, reduced=False))
    assert any("says reduced=false" in p and "10/10 epochs (stage 1/2) of the protocol's 200/10" in p
               for p in check_run(d)), check_run(d)
    r = _bench("results", "check", "--results", str(tmp_path), "--quiet")
    assert r.exit_code == 1 and "reduced=false" in r.output, r.output


def test_reduced_is_checked_against_the_epochs_in_the_log(tmp_path):
    """A real run's config (preset 'cifar': 200 / 10 protocol epochs) with a 15-epoch stage-1 log."""
    d, _ = make_run(tmp_path, "crt", "sgd", 0, 60.0, reduced=True)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(preset="cifar", stage1={"epochs": 15, "protocol_epochs": 200},
               stage2={"epochs": 10, "protocol_epochs": 10})
    _rewrite(d, cfg, _log(15, 10))
    assert check_run(d) == []
    # the flag and the epochs edited together: the log still shows 15 stage-1 epochs
    _rewrite(d, dict(cfg, reduced=False, stage1={"epochs": 200, "protocol_epochs": 200}))
    probs = check_run(d)
    assert "log.jsonl holds 15 stage-1 epochs, config.json says 200" in probs, probs
    assert any("says reduced=false" in p for p in probs), probs
    # the protocol edited to the epochs run: the built-in preset says otherwise
    _rewrite(d, dict(cfg, reduced=False, stage1={"epochs": 15, "protocol_epochs": 15}))
    probs = check_run(d)
    assert any("protocol epochs 15/10 (stage 1/2), preset 'cifar' has 200/10" in p for p in probs), probs
    assert any("says reduced=false" in p for p in probs), probs
    # a stage-2 log shorter than configured
    _rewrite(d, cfg, _log(15, 4))
    assert "log.jsonl holds 4 stage-2 epochs, config.json says 10" in check_run(d)


def test_protocol_of_a_preset_that_states_it():
    """cifar-tiny trains 30/5 epochs of a stated 200/10 protocol: its runs are reduced, and pass as such."""
    cfg = {"preset": "cifar-tiny", "stage1": {"epochs": 30, "protocol_epochs": 200},
           "stage2": {"epochs": 5, "protocol_epochs": 10}}
    assert schedule_problems(dict(cfg, reduced=True), _log(30, 5)) == []
    assert any("reduced=false" in p for p in schedule_problems(dict(cfg, reduced=False), _log(30, 5)))
    edited = dict(cfg, reduced=False, stage1={"epochs": 30, "protocol_epochs": 30},
                  stage2={"epochs": 5, "protocol_epochs": 5})
    assert any("preset 'cifar-tiny' has 200/10" in p for p in schedule_problems(edited, _log(30, 5)))


def test_schedule_problems_without_a_log():
    base = {"preset": "some/file.toml", "stage1": {"epochs": 200, "protocol_epochs": 200},
            "stage2": {"epochs": 10, "protocol_epochs": 10}}
    assert schedule_problems(dict(base, reduced=False), []) == []
    assert schedule_problems(dict(base, reduced=True), []) != []  # nothing was shortened
    short2 = dict(base, stage2={"epochs": 3, "protocol_epochs": 10})
    assert schedule_problems(dict(short2, reduced=True), []) == []
    assert schedule_problems(dict(short2, reduced=False), []) != []


# ------------------------------------------------------------------------------------------------ seeds


@pytest.mark.parametrize("seed", ["-5", "-1", str(2 ** 32), str(2 ** 64), "2**64", "1.5", ""])
def test_run_refuses_bad_seeds_before_any_compute(tmp_path, seed):
    r = _bench("run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--seed", seed, "--results",
               str(tmp_path / "res"), "--quiet")
    _usage_error(r, "--seed")
    assert not (tmp_path / "res").exists()  # refused before the results folder was touched


@pytest.mark.parametrize("seeds,phrase", [("", "no seeds"), (" ", "no seeds"), ("0,-5", "outside"),
                                          ("0,,1", "empty entry"), (str(2 ** 32), "outside"), ("1,1", "repeats")])
def test_grid_refuses_bad_seed_lists(tmp_path, seeds, phrase):
    r = _bench("grid", "--dataset", "cifar10-lt-tiny", "--seed", seeds, "--results", str(tmp_path / "res"),
               "--dry-run", "--calibration-steps", "0")
    _usage_error(r, "--seed", phrase)
    assert "complete" not in r.output


def test_seed_bounds():
    assert check_seed(0) == 0 and check_seed("4294967295") == 2 ** 32 - 1 and check_seed(" 7 ") == 7
    for bad in (-1, 2 ** 32, True, 1.0, "x", "2**64"):
        with pytest.raises(ValueError):
            check_seed(bad)


def test_largest_seed_is_accepted_by_the_grid_plan(tmp_path):
    r = _bench("grid", "--dataset", "cifar10-lt-tiny", "--seed", f"0,{2 ** 32 - 1}", "--method", "ce",
               "--results", str(tmp_path / "res"), "--dry-run", "--calibration-steps", "0")
    assert r.exit_code == 0 and f"seed{2 ** 32 - 1}" in r.output, r.output


# ------------------------------------------------------------------------------------------------ stability


def test_stability_bounds():
    assert (LOSS_RISE_BOUND, NLL_BOUND) == (2.0, 3.0)  # the bounds the README states
    rows = lambda *losses: [{"stage": 2, "epoch": i + 1, "loss": x} for i, x in enumerate(losses)]  # noqa: E731
    calm = {"nll": 1.2}
    assert stability_flags(rows(2.0, 1.0, 0.5), calm, 100) == []
    assert stability_flags(rows(1.0, 3.0, 2.0), calm, 100) == []          # last epoch at exactly 2x: not flagged
    assert len(stability_flags(rows(1.0, 1.5, 2.01), calm, 100)) == 1     # just past 2x
    # stage-1 rows never count (stage 1 is judged by its own divergence check)
    stage1_rows = [{"stage": 1, "epoch": 1, "loss": 1.0}, {"stage": 1, "epoch": 2, "loss": 9.0}]
    assert stability_flags(stage1_rows, calm, 10) == []
    # NLL bound: 3 x log C, computed here independently
    c10 = 3 * math.log(10)  # 6.9078
    assert stability_flags([], {"nll": 6.90}, 10) == [] and len(stability_flags([], {"nll": 6.91}, 10)) == 1
    assert c10 == pytest.approx(6.907755, abs=1e-6)
    assert len(stability_flags([], {"nll": float("inf")}, 10)) == 1


def test_the_issues_unstable_run_is_flagged():
    """Stage-2 loss 210 -> 680 with test NLL 863 on CIFAR-100 (from the issue): both bounds exceeded."""
    log = [{"stage": 1, "epoch": 1, "loss": 4.0}] + [{"stage": 2, "epoch": i + 1, "loss": x}
                                                     for i, x in enumerate([210.0, 350.0, 480.0, 680.0])]
    flags = stability_flags(log, {"nll": 863.0}, 100)
    assert len(flags) == 2
    assert "210" in flags[0] and "680" in flags[0] and "2x" in flags[0]
    assert "863" in flags[1] and f"{3 * math.log(100):.4g}" in flags[1]


def test_the_unstable_flag_in_config_is_audited(tmp_path):
    d, metrics = make_run(tmp_path, "crt", "sgd", 0, 60.0)
    cfg = json.loads((d / "config.json").read_text())
    log = [{"stage": 2, "epoch": i + 1, "loss": x} for i, x in enumerate([1.0, 1.5, 2.5])]
    (d / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    want = stability_flags(log, metrics, len(cfg["train_class_counts"]))
    assert len(want) == 1
    _rewrite(d, dict(cfg, stage2={"epochs": 3}, unstable=want))
    assert check_run(d) == []
    _rewrite(d, dict(cfg, stage2={"epochs": 3}, unstable=[]))  # the flag removed by hand
    assert any("unstable flags" in p for p in check_run(d)), check_run(d)


@pytest.mark.parametrize("inside", [False, True])
def test_results_check_on_a_folder_without_runs_is_an_error(tmp_path, inside):
    """An existing folder that is not a store (e.g. runs/ itself) must not pass as 'nothing to check'."""
    make_run(tmp_path, "ce", "sgd", 0, 60.0)
    where = tmp_path / "runs" if inside else tmp_path / "elsewhere"
    where.mkdir(exist_ok=True)
    _usage_error(_bench("results", "check", "--results", str(where)), "has no runs/ folder")
    assert ("pass its parent" in _bench("results", "check", "--results", str(where)).output) == inside


def test_a_data_error_leaves_no_runs_folder_in_a_new_store(tmp_path):
    """Bad input leaves the store untouched: the data is loaded before the write probe creates runs/."""
    res = tmp_path / "new-store"
    r = _bench("run", "--method", "ce", "--dataset", "cifar10-lt", "--imbalance", "100",
               "--data-root", str(tmp_path / "no-such-data"), "--results", str(res))
    _usage_error(r, "does not exist")
    assert not (res / "runs").exists()
