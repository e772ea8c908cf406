"""Bad input: each gets one clear `error:` line, exit status 2, and leaves the results store exactly as it was.

Covered: truncated npz, truncated pickle, wrong array shapes, labels out of range, split lists naming missing
files (and a missing list), a diverging run (stage 1 and stage 2), an unwritable results folder (three ways, as root
ignores permissions), and a full disk (simulated write failure, and a real tiny tmpfs where mounting is allowed).
"""
from __future__ import annotations

import errno
import io
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bench
from ltbench.errors import LtbenchError
from ltbench.registry import get_dataset
from reliability_util import snapshot, write_preset
from report_fixtures import REPO, make_run


def _cifar10_root(root: Path, per_class: int = 50) -> Path:
    """A CIFAR-10 torchvision layout (data_batch_1..5 + test_batch) with random images, ``per_class`` per class."""
    rng = np.random.default_rng(0)
    d = root / "cifar10" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    labels = np.tile(np.arange(10), per_class)
    rng.shuffle(labels)
    for i, part in enumerate(np.array_split(labels, 5), 1):
        rows = rng.integers(0, 256, (len(part), 3072), dtype=np.uint8)
        (d / f"data_batch_{i}").write_bytes(pickle.dumps({"data": rows, "labels": part.tolist()}))
    test = np.repeat(np.arange(10), 3)
    (d / "test_batch").write_bytes(pickle.dumps({"data": rng.integers(0, 256, (30, 3072), dtype=np.uint8),
                                                 "labels": test.tolist()}))
    return root


@pytest.fixture(autouse=True)
def _one_thread():
    """Training tests here run in-process; one thread is 5x faster on a loaded 2-core machine."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def store(tmp_path) -> tuple[Path, dict[str, str]]:
    """A results folder holding one sound run, and its snapshot."""
    results = tmp_path / "results"
    make_run(results, "ce", "sgd", 0, 60.0)
    return results, snapshot(results)


def _run(results: Path, *args: str):
    return CliRunner().invoke(bench.cli, ["run", "--results", str(results), "--quiet", "--device", "cpu", *args])


def _assert_refused(r, store, *phrases: str) -> None:
    results, before = store
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert r.stderr.startswith("error: ") and "Traceback" not in r.output, r.output
    for p in phrases:
        assert p in r.stderr, (p, r.stderr)
    assert snapshot(results) == before, "the results store changed"


def test_fake_cifar_root_is_valid(tmp_path):
    """The corrupt-file tests below break one thing in this layout; intact, it loads (as a home-made CIFAR-format set:
    its sizes are not the official ones, which a normal load refuses after these structural checks)."""
    data = get_dataset("cifar10-lt").load(_cifar10_root(tmp_path), 10, verify=False)
    assert len(data.test_labels) == 30 and 0 < len(data.train_labels) < 500


def test_truncated_pickle(tmp_path, store):
    root = _cifar10_root(tmp_path / "data")
    f = root / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    r = _run(store[0], "--method", "ce", "--dataset", "cifar10-lt", "--imbalance", "10", "--data-root", str(root))
    _assert_refused(r, store, "data_batch_3", "truncated or corrupt")


def test_truncated_npz(tmp_path, store):
    root = _cifar10_root(tmp_path / "data")
    buf = io.BytesIO()
    np.savez(buf, data=np.zeros((10, 3072), np.uint8), labels=np.zeros(10, np.int64))
    (root / "cifar10" / "cifar10_train_lt_if10.npz").write_bytes(buf.getvalue()[:700])
    r = _run(store[0], "--method", "ce", "--dataset", "cifar10-lt", "--imbalance", "10", "--data-root", str(root))
    _assert_refused(r, store, "cifar10_train_lt_if10.npz", "truncated or corrupt")


@pytest.mark.parametrize("what,phrase", [("shape", "uint8 [N, 3072]"), ("count", "images but"),
                                         ("labels", "labels outside [0, 9]")])
def test_wrong_shapes_and_labels_out_of_range(tmp_path, store, what, phrase):
    root = _cifar10_root(tmp_path / "data")
    f = root / "cifar10" / "cifar-10-batches-py" / "test_batch"
    t = pickle.loads(f.read_bytes())
    if what == "shape":
        t["data"] = t["data"][:, :3000]
    elif what == "count":
        t["labels"] = t["labels"][:-1]
    else:
        t["labels"][4] = 10
    f.write_bytes(pickle.dumps(t))
    r = _run(store[0], "--method", "ce", "--dataset", "cifar10-lt", "--imbalance", "10", "--data-root", str(root))
    _assert_refused(r, store, "test_batch", phrase)


def test_split_list_naming_missing_files(tmp_path, store):
    from jpeg_fixture import make_tree
    rel = make_tree(tmp_path / "inet")
    (tmp_path / "inet" / rel["train"][0]).unlink()
    r = _run(store[0], "--method", "ce", "--dataset", "imagenet-lt", "--data-root", str(tmp_path / "inet"))
    _assert_refused(r, store, "missing", rel["train"][0])
    (tmp_path / "inet" / "ImageNet_LT_train.txt").unlink()
    r = _run(store[0], "--method", "ce", "--dataset", "imagenet-lt", "--data-root", str(tmp_path / "inet"))
    _assert_refused(r, store, "ImageNet_LT_train.txt", "not found")


@pytest.mark.parametrize("stage", [1, 2])
def test_diverging_run_stops_and_records_nothing(tmp_path, store, stage):
    preset = write_preset(tmp_path / "p.toml", epochs=1, stage2_epochs=1)
    text = preset.read_text()
    if stage == 1:
        text = text.replace("lr = 0.05", "lr = 1e12")
    else:
        text = text.replace("[stage2]\n", "[stage2]\nlr = 1e30\n")
    preset.write_text(text)
    r = _run(store[0], "--method", "ce" if stage == 1 else "crt", "--dataset", "cifar10-lt-tiny",
             "--preset", str(preset), "--deterministic")
    _assert_refused(r, store, "diverged", f"stage {stage}", "Nothing was recorded")


def test_non_finite_predictions_are_refused(tmp_path, store, monkeypatch):
    """A method whose predictor emits NaN (no training loss to catch it) records nothing either."""
    import methods.ce as ce
    monkeypatch.setattr(ce, "log_softmax_predictor", lambda net: (lambda x: net(x) * float("nan")))
    preset = write_preset(tmp_path / "p.toml", epochs=1, stage2_epochs=1)
    r = _run(store[0], "--method", "ce", "--dataset", "cifar10-lt-tiny", "--preset", str(preset))
    _assert_refused(r, store, "diverged", "not finite")


def test_unwritable_results_under_a_file(tmp_path, store):
    """Works as root too: mkdir under a regular file fails with ENOTDIR whatever the permissions."""
    (tmp_path / "plain-file").write_text("x")
    r = _run(tmp_path / "plain-file" / "results", "--method", "ce", "--dataset", "cifar10-lt-tiny")
    _assert_refused(r, store, "not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits; covered by the two other variants")
def test_unwritable_results_by_permissions(tmp_path, store):
    results = tmp_path / "ro"
    (results / "runs").mkdir(parents=True)
    results.joinpath("runs").chmod(0o500)
    try:
        r = _run(results, "--method", "ce", "--dataset", "cifar10-lt-tiny")
        _assert_refused(r, store, "not writable")
    finally:
        results.joinpath("runs").chmod(0o700)


def _mount_tmpfs(where: Path, opts: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); the simulated variant covers it")


def test_unwritable_results_on_a_read_only_filesystem(tmp_path, store):
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=64k")
    try:
        r = _run(ro / "results", "--method", "ce", "--dataset", "cifar10-lt-tiny")
        _assert_refused(r, store, "not writable", "Read-only file system")
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def _assert_no_run_left(results: Path) -> None:
    runs = results / "runs"
    entries = [p for p in runs.rglob("*") if p.is_file()] if runs.exists() else []
    assert entries == [], entries  # no run folder, no hidden tmp folder


def test_full_disk_simulated(tmp_path, monkeypatch):
    """The disk fills while the run folder is written: ENOSPC from a file write."""
    import ltbench.store as store_mod
    preset = write_preset(tmp_path / "p.toml", epochs=1, stage2_epochs=1)
    real_open = open
    written = {"n": 0}

    class Full(io.FileIO):
        def write(self, b):  # the first file fits, the second fills the disk
            written["n"] += 1
            if written["n"] > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(b)

    def fake_open(path, mode="r", *a, **kw):
        return Full(path, mode) if "w" in mode and "b" in mode else real_open(path, mode, *a, **kw)
    monkeypatch.setattr(store_mod, "open", fake_open, raising=False)
    results = tmp_path / "results"
    r = _run(results, "--method", "ce", "--dataset", "cifar10-lt-tiny", "--preset", str(preset))
    assert r.exit_code == 2 and "No space left on device" in r.stderr and "nothing was recorded" in r.stderr, r.output
    assert written["n"] == 2
    _assert_no_run_left(results)


def test_full_disk_real_tmpfs(tmp_path):
    full = tmp_path / "full"
    _mount_tmpfs(full, "size=16k")
    try:
        preset = write_preset(tmp_path / "p.toml", epochs=1, stage2_epochs=1)
        r = _run(full / "results", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--preset", str(preset))
        assert r.exit_code == 2 and "No space left on device" in r.stderr, r.output
        _assert_no_run_left(full / "results")
    finally:
        subprocess.run(["umount", str(full)], check=False)


def test_corrupt_checkpoint_is_reported_not_used(tmp_path, monkeypatch):
    """A stage-1 checkpoint that is not a checkpoint (e.g. copied in by hand) gets a clear message."""
    from ltbench.config import resolve
    from ltbench.train.stage1 import stage1_dir
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    preset = write_preset(tmp_path / "p.toml", epochs=1, stage2_epochs=1)
    cfg = resolve("ce", "cifar10-lt-tiny", None, "sgd", 0, str(preset), device="cpu")
    d = stage1_dir(cfg, get_dataset("cifar10-lt-tiny").load(None, None))
    d.mkdir(parents=True)
    (d / "ckpt.pt").write_bytes(b"not a checkpoint")
    r = _run(tmp_path / "results", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--preset", str(preset))
    assert r.exit_code == 2 and "cannot be read" in r.stderr and "delete it" in r.stderr, r.output
    with pytest.raises(LtbenchError):
        from ltbench.checkpoint import load_checkpoint
        load_checkpoint(d / "ckpt.pt")
    shutil.rmtree(d)


BROKEN_METHOD_CHILD = """
import sys
import methods
methods.__path__.append(sys.argv[1])
from ltbench.cli import cli
cli(["list"])
"""


@pytest.mark.parametrize("body, why", [("def broken(:\n", "SyntaxError"),
                                       ("import no_such_module_for_ltbench\n", "ModuleNotFoundError")])
def test_a_method_file_that_does_not_import_is_named_in_one_line(tmp_path, body, why):
    """A broken file in methods/ stops every command with one line naming the file and the fix, not a traceback."""
    extra = tmp_path / "extra_methods"
    extra.mkdir()
    (extra / "zz_broken.py").write_text(body)
    r = subprocess.run([sys.executable, "-c", BROKEN_METHOD_CHILD, str(extra)], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{extra}/zz_broken.py" in lines[0] and why in lines[0] and "methods/" in lines[0]
