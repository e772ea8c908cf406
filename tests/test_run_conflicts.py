"""A run folder is named by dataset, extractor, method and seed only. A finished run with a *different* config in
that folder (a reduced schedule when the full one is asked for, other method options) must stop `run` and `grid`
with a clear error and leave the folder untouched, instead of being skipped as if it were the requested run."""
from __future__ import annotations

import json

from click.testing import CliRunner

from bench import cli
from ltbench.grid import build_plan


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


def _fake_finished_run(folder, stage1_epochs, options=None):
    """A complete-looking folder whose config records ``stage1_epochs`` (only the config is read here)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"stage1": {"epochs": stage1_epochs}, "stage2": {"epochs": 5},
                                                    "reduced": True, "method_options": options or {}}))
    (folder / "metrics.json").write_text("{}")
    (folder / "predictions.npz").write_bytes(b"")


def test_grid_plans_a_differing_run_as_a_conflict_and_refuses_without_replace(tmp_path):
    res = tmp_path / "res"
    plan = build_plan(["cifar10-lt-tiny"], [], [0], results=str(res), methods=["ce", "crt"])
    by_method = {r.cfg.run_name: r for g in plan for r in g.runs}
    preset_epochs = by_method["sgd-ce"].cfg.stage1.epochs
    _fake_finished_run(by_method["sgd-ce"].out, preset_epochs + 7)       # another schedule
    _fake_finished_run(by_method["sgd-crt"].out, preset_epochs)          # the same schedule
    _fake_finished_run(by_method["swa-crt"].out, preset_epochs, {"balanced": not by_method["swa-crt"].cfg.method_options.get("balanced", True)})

    again = {r.cfg.run_name: r for g in build_plan(["cifar10-lt-tiny"], [], [0], results=str(res),
                                                     methods=["ce", "crt"]) for r in g.runs}
    assert again["sgd-ce"].conflict and f"stage1.epochs {preset_epochs + 7} there" in again["sgd-ce"].conflict
    assert not again["sgd-ce"].done
    assert again["sgd-crt"].done and again["sgd-crt"].conflict is None
    assert again["swa-crt"].conflict and "option balanced" in again["swa-crt"].conflict
    assert again["swa-ce"].conflict is None and not again["swa-ce"].done  # nothing there yet

    args = ["grid", "--datasets", "cifar10-lt-tiny", "--seeds", "0", "--methods", "ce,crt", "--results", str(res),
            "--calibration-steps", "0"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2
    assert "2 finished run folder(s)" in refused.output and "--replace" in refused.output
    planned = CliRunner().invoke(cli, [*args, "--dry-run"])  # a dry run lists them and exits 0
    assert planned.exit_code == 0 and planned.output.count("differs:") == 2
