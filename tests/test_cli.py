"""The CLI contract: clear errors, non-zero exit and nothing written for bad input; a real smoke run per tiny set."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from bench import cli
from ltbench.audit import check_run
from ltbench.metrics import compute_metrics
from conftest import AUDIT_TOOL, REPO


def _run(args, tmp_path):
    res = CliRunner().invoke(cli, ["run", "--results", str(tmp_path / "res"), "--quiet", *args])
    return res, tmp_path / "res"


def _no_runs(results):
    return not (results / "runs").exists() or not any((results / "runs").rglob("metrics.json"))


def test_missing_data_root(tmp_path):
    res, out = _run(["--method", "ce", "--dataset", "cifar100-lt", "--data-root", str(tmp_path / "absent")], tmp_path)
    assert res.exit_code == 2
    assert "does not exist" in res.output and str(tmp_path / "absent") in res.output
    assert "download" in res.output.lower()
    assert _no_runs(out)


def test_empty_data_root_says_where_it_looked(tmp_path):
    (tmp_path / "empty").mkdir()
    res, out = _run(["--method", "ce", "--dataset", "cifar10-lt", "--data-root", str(tmp_path / "empty")], tmp_path)
    assert res.exit_code == 2 and "looked for" in res.output and "cifar-10-batches-py" in res.output
    assert _no_runs(out)


def test_unknown_dataset_lists_valid(tmp_path):
    res, out = _run(["--method", "ce", "--dataset", "cifar1000"], tmp_path)
    assert res.exit_code == 2 and "unknown dataset 'cifar1000'" in res.output
    assert "cifar100-lt" in res.output and "cifar10-lt-tiny" in res.output
    assert _no_runs(out)


def test_unknown_method_lists_valid(tmp_path):
    res, out = _run(["--method", "magic", "--dataset", "cifar10-lt-tiny"], tmp_path)
    assert res.exit_code == 2 and "unknown method 'magic'" in res.output
    for m in ("ce", "crt", "lws", "tau_norm", "swag", "srepr"):
        assert m in res.output
    assert _no_runs(out)


def test_unsupported_imbalance(tmp_path):
    res, out = _run(["--method", "ce", "--dataset", "cifar100-lt", "--imbalance", "30"], tmp_path)
    assert res.exit_code == 2 and "unsupported imbalance factor 30" in res.output and "10, 50, 100, 200" in res.output
    assert _no_runs(out)


def test_swag_method_needs_swa_extractor(tmp_path):
    res, out = _run(["--method", "srepr", "--dataset", "cifar10-lt-tiny", "--stage1", "sgd"], tmp_path)
    assert res.exit_code == 2 and "--stage1 swa" in res.output
    assert _no_runs(out)


def test_list_shows_methods_and_dataset_sizes():
    res = CliRunner().invoke(cli, ["list"])
    assert res.exit_code == 0
    assert "10,847" in res.output and "12,406" in res.output and "srepr" in res.output


# the README test runs the quick start on cifar100-lt-tiny by default
@pytest.mark.parametrize("dataset", ["cifar10-lt-tiny",
                                     pytest.param("cifar100-lt-tiny", marks=pytest.mark.slow)])
def test_smoke_run_writes_an_auditable_folder(tmp_path, dataset):
    """The default job on each bundled tiny set, through the real script in a subprocess (with a cache of its own,
    so stage 1 trains here whatever ran before)."""
    env = {**os.environ, "LTBENCH_CACHE": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, str(REPO / "bench.py"), "run", "--method", "ce", "--dataset", dataset,
                          "--results", str(tmp_path)], capture_output=True, text=True, cwd=REPO, env=env)
    assert res.returncode == 0, res.stderr
    d = tmp_path / "runs" / dataset / "sgd-ce" / "seed0"
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "log.jsonl", "metrics.json", "predictions.npz",
                                                   "reliability.png"]
    assert "acc" in res.stdout and "sgd-ce" in res.stdout            # the results table
    assert "epoch 30/30" in res.stderr                                # progress output
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["reduced"] is True and cfg["stage1"]["epochs"] == 30 and cfg["environment"]["torch"]
    rows = [json.loads(l) for l in (d / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and all({"loss", "lr", "train_acc", "images_per_s"} <= r.keys() for r in rows)
    z = np.load(d / "predictions.npz")
    assert z["labels"].dtype == np.int64 and z["confidence"].dtype == np.float32 and "logits" not in z.files
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics == pytest.approx(compute_metrics({k: z[k] for k in z.files}, np.array(cfg["train_class_counts"])))
    assert check_run(d) == []
    if AUDIT_TOOL.is_file():
        audit = subprocess.run([sys.executable, str(AUDIT_TOOL), str(d), "--tol", "1e-4"], capture_output=True,
                               text=True)
        assert audit.returncode == 0 and audit.stdout.startswith("ok"), audit.stdout
    # running the same command again skips the finished run
    again = subprocess.run([sys.executable, str(REPO / "bench.py"), "run", "--method", "ce", "--dataset", dataset,
                            "--results", str(tmp_path)], capture_output=True, text=True, cwd=REPO, env=env)
    assert again.returncode == 0 and "skip" in again.stderr


def test_console_script_is_bench_cli():
    import tomllib
    from importlib.metadata import EntryPoint, entry_points
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "ltbench"]
    assert ep.load() is cli
    # what pyproject declares (the installed metadata may predate it): the package's group, the same object
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["ltbench"]
    assert declared == "ltbench.cli:cli" and EntryPoint("ltbench", declared, "console_scripts").load() is cli


@pytest.mark.slow
def test_issue_command_cifar100_if100_two_epochs(tmp_path, shared_data):
    """The foundation's acceptance command on real data (about 2 minutes on 2 CPU cores)."""
    res = subprocess.run([sys.executable, str(REPO / "bench.py"), "run", "--method", "ce", "--dataset", "cifar100-lt",
                          "--imbalance", "100", "--epochs", "2", "--data-root", str(shared_data), "--results",
                          str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    d = tmp_path / "runs" / "cifar100-lt-if100" / "sgd-ce" / "seed0"
    m = json.loads((d / "metrics.json").read_text())
    assert (m["n_train"], m["n_test"], m["n_classes_many"], m["n_classes_medium"], m["n_classes_few"]) == \
        (10847, 10000, 35, 35, 30)
    if AUDIT_TOOL.is_file():
        audit = subprocess.run([sys.executable, str(AUDIT_TOOL), str(d), "--cifar100-if", "100", "--tol", "1e-4"],
                               capture_output=True, text=True)
        assert audit.returncode == 0, audit.stdout


def test_runs_go_to_outputs_not_the_committed_store(tmp_path, monkeypatch):
    """Without --results a run lands in ./outputs (or $LTBENCH_RESULTS), never in ./results, the committed store:
    a user's short check of a committed setting must not collide with (or replace) the leaderboard's run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LTBENCH_RESULTS", raising=False)
    args = ["run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--epochs", "1", "--quiet"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "outputs/runs/cifar10-lt-tiny/sgd-ce/seed0/metrics.json").is_file()
    assert not (tmp_path / "results").exists()
    assert "--results outputs" in res.output  # the hint for tabulating them
    monkeypatch.setenv("LTBENCH_RESULTS", str(tmp_path / "mine"))
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "mine/runs/cifar10-lt-tiny/sgd-ce/seed0/metrics.json").is_file()


# ------------------------------------------------------------------------ one package, one error format (issue 15)


def test_help_imports_no_torch():
    """`bench.py --help`, `run --help` and `grid --help` answer without importing torch (or numpy): the commands
    import their libraries when they run."""
    code = ("import sys, runpy\n"
            "sys.argv = ['bench.py', *sys.argv[1:]]\n"
            "try:\n    runpy.run_path('bench.py', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'pandas', 'matplotlib') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    for args in (["--help"], ["run", "--help"], ["grid", "-h"], ["results", "check", "-h"]):
        res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO)
        assert res.returncode == 0, res.stderr
        assert "Usage:" in res.stdout and res.stdout.strip().endswith("HEAVY []"), (args, res.stdout[-300:])


def test_every_command_is_attached():
    """The group holds every command; each comes from its own module under ltbench/cli/."""
    import ltbench.cli as pkg
    assert sorted(pkg.cli.commands) == ["compare", "data", "grid", "leaderboard", "list", "plot", "results", "run",
                                        "site", "stats", "table"]
    assert cli is pkg.cli
    for name, cmd in pkg.cli.commands.items():
        assert cmd.callback.__module__.startswith("ltbench.cli."), (name, cmd.callback.__module__)


@pytest.mark.parametrize("args,command,names", [
    (["run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--seed", "-5"], "run", "--seed"),
    (["run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--seed", str(2 ** 32)], "run", "--seed"),
    (["run", "--dataset", "cifar10-lt-tiny"], "run", "--method"),                       # missing required option
    (["run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--bogus"], "run", "--bogus"),  # unknown option
    (["run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--stage1", "adam"], "run", "--stage1"),
    (["results", "check", "--tol", "nan"], "results check", "--tol"),
    (["grid", "--dataset", "cifar10-lt-tiny", "--seed", "", "--dry-run"], "grid", "--seed"),  # empty seed list
    (["grid", "--dataset", "cifar10-lt-tiny", "--seed", "0,0", "--dry-run"], "grid", "--seed"),
    (["grid", "--dataset", "cifar10-lt-tiny", "--seeds", "0", "--dry-run"], "grid", "--seeds"),  # the old spelling
    (["grid", "--dataset", "cifar10-lt-tiny", "--stage1", "sgd,adam", "--dry-run"], "grid", "--stage1"),
    (["grid", "--dataset", "cifar10-lt-tiny", "--imbalance", "ten", "--dry-run"], "grid", "--imbalance"),
    (["tabel"], "", "tabel"),                                                           # unknown command
])
def test_usage_errors_are_one_error_line(tmp_path, args, command, names):
    """Click's usage errors look like every other bad input: one `error:` line on stderr naming the option, where
    to read more, exit status 2, no usage block; nothing written."""
    res = CliRunner().invoke(cli, args, env={"LTBENCH_RESULTS": str(tmp_path / "res")}, prog_name="bench.py")
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert names in lines[0] and lines[0].endswith(f"; see 'bench.py{' ' + command if command else ''} -h'"), lines[0]
    assert "Usage:" not in res.output and "Try " not in res.output and res.stdout == ""
    assert not (tmp_path / "res").exists()


def test_usage_error_from_the_real_script():
    """The same line through the script itself (prog name from argv), as a user sees it."""
    res = subprocess.run([sys.executable, str(REPO / "bench.py"), "run", "--method", "ce", "--dataset",
                          "cifar10-lt-tiny", "--seed", "-5"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines() == ["error: invalid value for '--seed': seed -5 is outside [0, 2^32 - 1]; seeds "
                                       "are non-negative 32-bit integers; see 'bench.py run -h'"], res.stderr


def test_run_subset_seed_reaches_the_loader(tmp_path):
    """--subset-seed is checked like --seed and passed on: a non-zero one on a fixed subset is refused, and on
    CIFAR-LT it asks for the official train pickles (the seed-0 npz cannot draw another subset)."""
    (tmp_path / "empty").mkdir()
    res, _ = _run(["--method", "ce", "--dataset", "cifar10-lt", "--imbalance", "100", "--subset-seed", "3",
                   "--data-root", str(tmp_path / "empty")], tmp_path)
    assert res.exit_code == 2 and "subset seed 3 needs the official train pickles" in res.stderr, res.output
    res, _ = _run(["--method", "ce", "--dataset", "cifar10-lt-tiny", "--subset-seed", "3"], tmp_path)
    assert res.exit_code == 2 and "drop --subset-seed" in res.stderr and len(res.stderr.splitlines()) == 1
    res, _ = _run(["--method", "ce", "--dataset", "cifar10-lt-tiny", "--subset-seed", "-1"], tmp_path)
    assert res.exit_code == 2 and res.stderr.startswith("error: invalid value for '--subset-seed'")


def test_threads_beyond_the_cores_warn_once(tmp_path, monkeypatch):
    """--threads above os.cpu_count() is accepted (and recorded) with one warning; within the cores, none."""
    import os
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    many = CliRunner().invoke(cli, ["grid", "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "ce",
                                    "--stage1", "sgd", "--threads", "999", "--dry-run", "--calibration-steps", "0",
                                    "--results", str(tmp_path)])
    assert many.exit_code == 0, many.output
    assert many.stderr.count("warning: --threads 999 is more than this machine's 2 cores") == 1
    few = CliRunner().invoke(cli, ["grid", "--dataset", "cifar10-lt-tiny", "--seed", "0", "--method", "ce",
                                   "--stage1", "sgd", "--threads", "2", "--dry-run", "--calibration-steps", "0",
                                   "--results", str(tmp_path)])
    assert few.exit_code == 0 and "warning" not in few.stderr
