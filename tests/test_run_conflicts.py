"""A run folder is named by dataset, extractor, method and seed only. A finished run with a *different* config in
that folder (a reduced schedule when the full one is asked for, other method options) must stop `run` and `grid`
with a clear error and leave the folder untouched, instead of being skipped as if it were the requested run."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench import cli
from ltbench.grid import build_plan


@pytest.fixture(autouse=True)
def _one_thread():
    """In-process runs: one thread is several times faster on a loaded 2-core machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _run(res_dir, *args):
    return CliRunner().invoke(cli, ["run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--results", str(res_dir),
                                    "--quiet", *args])


def test_run_refuses_a_finished_run_with_another_schedule_and_force_replaces_it(tmp_path):
    res = tmp_path / "res"
    first = _run(res, "--epochs", "1")
    assert first.exit_code == 0, first.output
    folder = res / "runs" / "cifar10-lt-tiny" / "sgd-ce" / "seed0"
    before = {f.name: f.read_bytes() for f in folder.iterdir()}

    same = _run(res, "--epochs", "1")  # the same run: skipped (not re-run, not an error)
    assert same.exit_code == 0
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before

    other = _run(res, "--epochs", "2")
    assert other.exit_code == 2
    assert "different config" in other.output and "stage1.epochs 1 there, 2 asked" in other.output
    assert "--force" in other.output and "--results" in other.output
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before  # untouched

    replaced = _run(res, "--epochs", "2", "--force")
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((folder / "config.json").read_text())["stage1"]["epochs"] == 2
    assert not _run(res, "--epochs", "2").exit_code  # and now that run is the one skipped


def _fake_finished_run(folder, stage1_epochs, options=None, cfg=None):
    """A complete-looking folder whose config records ``stage1_epochs`` (only the config is read here) and names the
    run of ``cfg`` (method, dataset, imbalance, extractor, seed), as every real config.json does."""
    folder.mkdir(parents=True)
    ident = {k: getattr(cfg, k) for k in ("method", "dataset", "imbalance", "stage1_mode", "seed")} if cfg else {}
    (folder / "config.json").write_text(json.dumps({"stage1": {"epochs": stage1_epochs}, "stage2": {"epochs": 5},
                                                    "reduced": True, **ident,
                                                    # resolved options, as a real run records them (a config
                                                    # without them predates the options: legacy values apply)
                                                    "method_options": {**(cfg.method_options if cfg else {}),
                                                                       **(options or {})}}))
    (folder / "metrics.json").write_text("{}")
    (folder / "predictions.npz").write_bytes(b"")


def test_grid_plans_a_differing_run_as_a_conflict_and_refuses_without_replace(tmp_path):
    res = tmp_path / "res"
    plan = build_plan(["cifar10-lt-tiny"], [], [0], results=str(res), methods=["ce", "crt"])
    by_method = {r.cfg.run_name: r for g in plan for r in g.runs}
    preset_epochs = by_method["sgd-ce"].cfg.stage1.epochs
    _fake_finished_run(by_method["sgd-ce"].out, preset_epochs + 7, cfg=by_method["sgd-ce"].cfg)   # another schedule
    _fake_finished_run(by_method["sgd-crt"].out, preset_epochs, cfg=by_method["sgd-crt"].cfg)      # the same schedule
    swa_crt = by_method["swa-crt"]
    _fake_finished_run(swa_crt.out, preset_epochs, {"balanced": not swa_crt.cfg.method_options.get("balanced", True)},
                       cfg=swa_crt.cfg)

    again = {r.cfg.run_name: r for g in build_plan(["cifar10-lt-tiny"], [], [0], results=str(res),
                                                     methods=["ce", "crt"]) for r in g.runs}
    assert again["sgd-ce"].conflict and f"stage1.epochs {preset_epochs + 7} there" in again["sgd-ce"].conflict
    assert not again["sgd-ce"].done
    assert again["sgd-crt"].done and again["sgd-crt"].conflict is None
    assert again["swa-crt"].conflict and "option balanced" in again["swa-crt"].conflict
    assert again["swa-ce"].conflict is None and not again["swa-ce"].done  # nothing there yet

    args = ["grid", "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "ce,crt", "--results", str(res),
            "--calibration-steps", "0"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2
    assert "2 finished run folder(s)" in refused.output and "--replace" in refused.output
    planned = CliRunner().invoke(cli, [*args, "--dry-run"])  # a dry run lists them and exits 0
    assert planned.exit_code == 0 and planned.output.count("differs:") == 2


# ---------------------------------------------------------------- a finished run is recognised by content (issue 15)


def _folder(res, method="ce", seed=0):
    return res / "runs" / "cifar10-lt-tiny" / f"sgd-{method}" / f"seed{seed}"


@pytest.mark.parametrize("case", ["method", "seed", "unreadable", "no identity"])
def test_a_folder_holding_another_runs_config_is_an_error_not_a_skip(tmp_path, case):
    """Before: a complete folder was "skipped" whatever its config.json said, and its numbers printed as crt's."""
    from ltbench.config import resolve
    res = tmp_path / "res"
    want = resolve("crt", "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny", results=str(res))
    other = resolve("ce" if case == "method" else "crt", "cifar10-lt-tiny", None, "sgd", 5 if case == "seed" else 0,
                    "cifar-tiny", results=str(res))
    folder = _folder(res, "crt")
    _fake_finished_run(folder, want.stage1.epochs, cfg=None if case == "no identity" else other)
    if case == "unreadable":
        (folder / "config.json").write_text("{not json")
    (folder / "metrics.json").write_text(json.dumps({"acc": 12.34}))
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    r = CliRunner().invoke(cli, ["run", "--method", "crt", "--dataset", "cifar10-lt-tiny", "--results", str(res)])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "skip" not in r.output and "12.34" not in r.output  # the other run's numbers are not shown as crt's
    assert {"method": "another run: method 'ce' there, 'crt' asked", "seed": "another run: seed 5 there, 0 asked",
            "unreadable": "config.json cannot be read", "no identity": "no method recorded, 'crt' asked"}[case] \
        in r.stderr
    assert "--force" in r.stderr
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before


def test_grid_treats_another_runs_folder_as_a_conflict(tmp_path):
    res = tmp_path / "res"
    plan = {r.cfg.run_name: r for g in build_plan(["cifar10-lt-tiny"], [], [0], results=str(res), methods=["ce", "crt"])
            for r in g.runs}
    _fake_finished_run(plan["sgd-crt"].out, plan["sgd-crt"].cfg.stage1.epochs, cfg=plan["sgd-ce"].cfg)
    again = {r.cfg.run_name: r for g in build_plan(["cifar10-lt-tiny"], [], [0], results=str(res),
                                                     methods=["ce", "crt"]) for r in g.runs}
    assert not again["sgd-crt"].done and "method 'ce' there, 'crt' asked" in again["sgd-crt"].conflict


@pytest.mark.parametrize("same", [True, False])
def test_a_concurrent_writer_that_finished_first(tmp_path, monkeypatch, same):
    """Two writers of one folder: when the other one's run lands first, this one keeps it and skips only if it is
    the same config; with a different config it reports the conflict (exit 2), never the other's numbers as its own.
    The race is made deterministic: the other writer's folder appears just before this run writes its own."""
    import ltbench.runner as runner
    from reliability_util import write_preset
    preset = write_preset(tmp_path / "p.toml", epochs=1, stage2_epochs=1)
    res = tmp_path / "res"
    real = runner.write_run

    def other_writer_first(d, config, *a, **kw):
        theirs = dict(config, stage2=dict(config["stage2"], lr=config["stage2"]["lr"] * (1 if same else 2)))
        real(d, theirs, {**a[0], "acc": 98.76}, *a[1:], **kw)
        return real(d, config, *a, **kw)

    monkeypatch.setattr(runner, "write_run", other_writer_first)
    r = CliRunner().invoke(cli, ["run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--results", str(res),
                                 "--preset", str(preset), "--device", "cpu"])
    if same:
        assert r.exit_code == 0 and "skip:" in r.stderr, (r.output, r.exception)
    else:
        assert r.exit_code == 2, (r.output, r.exception)
        last = r.stderr.splitlines()[-1]
        assert last.startswith("error: ") and "written by another process" in last, r.stderr
        assert "stage2.lr 0.2 there, 0.1 asked" in r.stderr and "skip" not in r.output
        assert "98.76" not in r.stdout  # no results table with the other run's numbers
    assert json.loads((_folder(res) / "metrics.json").read_text())["acc"] == 98.76  # theirs, untouched


def test_a_finished_run_on_other_training_data_is_not_skipped(tmp_path, monkeypatch):
    """The config alone does not identify a run: one recorded from other training data (a wrong data root since
    fixed) has this config but another train_data_fingerprint. `run` refuses to skip it (exit 2, untouched);
    `grid` lists it as differing; --force replaces it with a run on the data loaded now."""
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    res = tmp_path / "res"
    assert _run(res, "--epochs", "1").exit_code == 0
    folder = res / "runs" / "cifar10-lt-tiny" / "sgd-ce" / "seed0"
    cfg_file = folder / "config.json"
    real = json.loads(cfg_file.read_text())["train_data_fingerprint"]
    other = "0" * len(real) if real != "0" * len(real) else "1" * len(real)
    cfg_file.write_text(cfg_file.read_text().replace(real, other))
    before = {f.name: f.read_bytes() for f in folder.iterdir()}

    again = _run(res, "--epochs", "1")
    assert again.exit_code == 2 and "trained on other data" in again.output, again.output
    assert f"train_data_fingerprint {other[:16]} there, {real[:16]}" in again.output
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
    plan = build_plan(["cifar10-lt-tiny"], [], [0], epochs=1, results=str(res), methods=["ce"], stage1_modes=["sgd"])
    (run,) = [r for g in plan for r in g.runs]
    assert not run.done and "train_data_fingerprint" in (run.conflict or "")
    assert _run(res, "--epochs", "1", "--force").exit_code == 0
    assert json.loads(cfg_file.read_text())["train_data_fingerprint"] == real


def test_grid_plan_loads_the_data_once_for_all_finished_runs_of_a_setting(tmp_path, monkeypatch):
    """Checking finished runs' data identity costs one load per dataset and load options over the whole plan, not
    one per run (the split-list loaders are not cached)."""
    import ltbench.data.load as load_mod

    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    res = tmp_path / "res"
    for seed in ("0", "1"):
        assert _run(res, "--epochs", "1", "--seed", seed).exit_code == 0
    calls = []
    real = load_mod.load_run_data
    monkeypatch.setattr(load_mod, "load_run_data", lambda cfg: calls.append(cfg.seed) or real(cfg))
    plan = build_plan(["cifar10-lt-tiny"], [], [0, 1], epochs=1, results=str(res), methods=["ce"],
                      stage1_modes=["sgd"])
    assert [r.done for g in plan for r in g.runs] == [True, True] and len(calls) == 1


def _recorded(tmp_path, cfg, drop_stage1=(), drop_options=()):
    """``cfg``'s config.json as a run recorded before ``drop_*`` existed would hold it."""
    from ltbench.store import as_recorded
    from ltbench.registry import get_method
    d = as_recorded(cfg.to_dict())
    d["method_options"] = as_recorded(get_method(cfg.method)(**cfg.method_options).options)
    for k in drop_stage1:
        d["stage1"].pop(k)
    for k in drop_options:
        d["method_options"].pop(k)
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    (out / "config.json").write_text(json.dumps(d))
    return out


def test_a_run_recorded_before_a_rule_change_is_not_skipped_as_the_new_rule(tmp_path):
    """Old: options and stage-1 fields a newer version added were not compared, so a tau_norm run that chose tau
    under the old rule (no ceiling) was skipped as complete, and a step-schedule run as the cosine one."""
    from ltbench.config import PRESET_DIR, resolve
    from ltbench.runner import finished_run_differs
    cfg = resolve("tau_norm", "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny", device="cpu")
    assert finished_run_differs(cfg, _recorded(tmp_path, cfg)) is None
    why = finished_run_differs(cfg, _recorded(tmp_path, cfg, drop_options=("ceiling",)))
    assert why is not None and "option ceiling=101.0 there, 99.0 asked" in why
    # a cosine run recorded before lr_schedule existed is the cosine run, and not the step one
    old = _recorded(tmp_path, cfg, drop_stage1=("lr_schedule",))
    assert finished_run_differs(cfg, old) is None
    text = (PRESET_DIR / "cifar-tiny.toml").read_text().replace(
        "[stage1]\n", '[stage1]\nlr_schedule = "step"\nlr_milestones = [20, 25]\n', 1)
    (tmp_path / "step.toml").write_text(text)
    step = resolve("tau_norm", "cifar10-lt-tiny", None, "sgd", 0, str(tmp_path / "step.toml"), device="cpu")
    why = finished_run_differs(step, old)
    assert why is not None and "stage1.lr_schedule 'cosine' there, 'step' asked" in why
