"""Data identity: every loaded dataset has a fingerprint of the training data actually loaded, the stage-1 cache is
keyed by it, and the CIFAR loaders refuse files that are not the official ones (class count, official set sizes,
md5 of the official test file) with one clear line before anything trains."""
from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import bench
from ltbench.audit import check_run
from ltbench.data.cifar_lt import BUNDLED, CIFAR10_LT, CIFAR100_LT
from ltbench.errors import LtbenchError
from ltbench.registry import get_dataset
from reliability_util import write_preset

# the official md5 sums as published with the CIFAR archives (and used by torchvision), restated here
OFFICIAL_TEST_MD5 = {"cifar10-lt": "40351d587109b95175f43aff81a1287e",
                     "cifar100-lt": "f0ef6b0ae62326f3e7ffdfab6717acfc"}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _copy_tiny(root: Path, name: str = "cifar10-lt-tiny", as_name: str | None = None) -> Path:
    dst = root / (as_name or name)
    dst.mkdir(parents=True)
    for f in ("train.npz", "test.npz"):
        shutil.copy(BUNDLED / name / f, dst / f)
    return dst


def _rewrite(path: Path, **changes) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(path, **arrays)


# ------------------------------------------------------------------------------------------------- fingerprint


def test_fingerprint_follows_the_content_not_the_path(tmp_path):
    spec = get_dataset("cifar10-lt-tiny")
    bundled = spec.load(None, None)
    fp = bundled.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert bundled.fingerprint() is fp  # computed once, cached on the object
    assert spec.load(str(_copy_tiny(tmp_path / "copy").parent), None).fingerprint() == fp  # same bytes elsewhere

    # one pixel changed / two labels swapped: the counts stay official, the fingerprint does not
    px = _copy_tiny(tmp_path / "px")
    with np.load(px / "train.npz") as z:
        data = z["data"].copy()
        labels = z["labels"].copy()
    data[7, 100] ^= 1
    _rewrite(px / "train.npz", data=data)
    assert spec.load(str(px.parent), None).fingerprint() != fp
    lab = _copy_tiny(tmp_path / "lab")
    i, j = 0, int(np.flatnonzero(labels == 1)[0])
    labels[[i, j]] = labels[[j, i]]
    _rewrite(lab / "train.npz", labels=labels)
    assert spec.load(str(lab.parent), None).fingerprint() != fp
    # the test set is not training data: the fingerprint ignores it
    te = _copy_tiny(tmp_path / "te")
    with np.load(te / "test.npz") as z:
        tdata = z["data"].copy()
    tdata[0, 0] ^= 1
    _rewrite(te / "test.npz", data=tdata)
    assert spec.load(str(te.parent), None).fingerprint() == fp
    # a held-out subset is other training data
    assert bundled.subset_train(np.arange(100)).fingerprint() != fp


def test_file_list_fingerprint_covers_paths_and_labels():
    from ltbench.data.file_lists import FileListLTData
    y = torch.tensor([0, 1, 1])
    a = FileListLTData("x", 2, Path("/r"), ["a.jpg", "b.jpg", "c.jpg"], y, ["t.jpg"], torch.tensor([0]))
    same = FileListLTData("x", 2, Path("/elsewhere"), ["a.jpg", "b.jpg", "c.jpg"], y.clone(), [], torch.tensor([]))
    path = FileListLTData("x", 2, Path("/r"), ["a.jpg", "b.jpg", "d.jpg"], y, ["t.jpg"], torch.tensor([0]))
    label = FileListLTData("x", 2, Path("/r"), ["a.jpg", "b.jpg", "c.jpg"], torch.tensor([0, 1, 0]), ["t.jpg"],
                           torch.tensor([0]))
    split = FileListLTData("x", 2, Path("/r"), ["a.jpg", "b.jpgc.jpg", ""], y, ["t.jpg"], torch.tensor([0]))
    assert a.fingerprint() == same.fingerprint()
    assert len({a.fingerprint(), path.fingerprint(), label.fingerprint(), split.fingerprint()}) == 4
    assert a.subset_train(np.array([0, 1])).fingerprint() != a.fingerprint()


# ------------------------------------------------------------------------------------------------- loader checks


def test_official_test_md5s_are_torchvisions():
    from torchvision.datasets import CIFAR10, CIFAR100
    assert dict(CIFAR10.test_list)["test_batch"] == CIFAR10_LT.test_md5 == OFFICIAL_TEST_MD5["cifar10-lt"]
    assert dict(CIFAR100.test_list)["test"] == CIFAR100_LT.test_md5 == OFFICIAL_TEST_MD5["cifar100-lt"]


def _fake_cifar100_root(root: Path, train_labels_full: np.ndarray, superset_labels: np.ndarray) -> Path:
    """A cifar100 folder with a structurally valid (but not official) test pickle and a superset npz."""
    d = root / "cifar100"
    (d / "cifar-100-python").mkdir(parents=True)
    rng = np.random.default_rng(0)
    test = {"data": rng.integers(0, 256, (100, 3072), dtype=np.uint8), "fine_labels": list(range(100))}
    (d / "cifar-100-python" / "test").write_bytes(pickle.dumps(test))
    n = len(superset_labels)
    np.savez(d / "cifar100_train_lt_if10.npz", data=np.zeros((n, 3072), np.uint8), labels=superset_labels,
             original_index=np.arange(n), train_labels_full=train_labels_full)
    return root


def test_cifar10_labels_in_the_cifar100_file_are_refused(tmp_path):
    """The issue's worst case, in miniature: the cifar100 superset holds 10-class (CIFAR-10) labels."""
    full = np.repeat(np.arange(10), 5000)
    root = _fake_cifar100_root(tmp_path, full, full[:50])
    with pytest.raises(LtbenchError, match="has 10 classes, expected 100"):
        CIFAR100_LT.load(root, 100)


@pytest.mark.parametrize("content, says", [
    ({"data": np.zeros((10, 3072), np.uint8), "labels": list(range(10))}, "it has 'labels': a CIFAR-10 file"),
    ([1, 2, 3], "holds a list, not a CIFAR batch"),
])
def test_a_test_pickle_of_another_kind_is_one_clear_error(tmp_path, content, says):
    """CIFAR-10's test_batch (or something that is not a batch) under CIFAR-100's test name: an error naming the
    file and what it is, never a KeyError / TypeError traceback; through the CLI, one `error:` line and exit 2."""
    full = np.repeat(np.arange(100), 500)
    root = _fake_cifar100_root(tmp_path, full, full[:50])
    test = root / "cifar100" / "cifar-100-python" / "test"
    test.write_bytes(pickle.dumps(content))
    with pytest.raises(LtbenchError, match="the file is not a cifar100-lt file") as e:
        CIFAR100_LT.load(root, 100)
    assert says in str(e.value) and str(test) in str(e.value)
    r = CliRunner().invoke(bench.cli, ["run", "--method", "ce", "--dataset", "cifar100-lt", "--imbalance", "100",
                                       "--data-root", str(root), "--results", str(tmp_path / "res")])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1, r.output
    assert not (tmp_path / "res" / "runs").exists() or not any((tmp_path / "res" / "runs").iterdir())


def test_superset_of_the_wrong_size_is_refused(tmp_path):
    full = np.repeat(np.arange(100), 500)  # official full label counts, but only 100 superset rows
    root = _fake_cifar100_root(tmp_path, full, np.arange(100))
    with pytest.raises(LtbenchError, match=r"has 100 images \(1 in class 0\), expected 19,573 \(500 in class 0\)"):
        CIFAR100_LT.load(root, 100)
    # the full-label check: 49,999 labels
    root2 = _fake_cifar100_root(tmp_path / "b", full[1:], np.arange(100))
    with pytest.raises(LtbenchError, match="has 49,999 images"):
        CIFAR100_LT.load(root2, 100)


def test_miniature_torchvision_layout_is_refused_unless_verify_is_off(tmp_path):
    from test_cifar_lt import _write_tv_cifar10
    _write_tv_cifar10(tmp_path)
    with pytest.raises(LtbenchError, match=r"full train label list has 400 images .*expected 50,000"):
        CIFAR10_LT.load(tmp_path, 10)
    assert len(CIFAR10_LT.load(tmp_path, 10, verify=False).train_y) > 0


def test_tiny_set_copies_are_checked(tmp_path):
    # CIFAR-10 tiny files where CIFAR-100 tiny is expected: class count
    _copy_tiny(tmp_path, "cifar10-lt-tiny", as_name="cifar100-lt-tiny")
    with pytest.raises(LtbenchError, match="has 10 classes, expected 100"):
        get_dataset("cifar100-lt-tiny").load(str(tmp_path), None)
    # one train image dropped: the sizes
    d = _copy_tiny(tmp_path / "b")
    with np.load(d / "train.npz") as z:
        _rewrite(d / "train.npz", data=z["data"][1:], labels=z["labels"][1:], original_index=z["original_index"][1:])
    with pytest.raises(LtbenchError, match=r"has 198 images \(49 in class 0\), expected 199 \(50 in class 0\)"):
        get_dataset("cifar10-lt-tiny").load(str(tmp_path / "b"), None)
    # a data root without the tiny folder: the bundled copy
    assert len(get_dataset("cifar10-lt-tiny").load(str(tmp_path / "none"), None).train_y) == 199


def test_real_data_loads_and_a_modified_test_file_is_refused(tmp_path, shared_data):
    src = shared_data / "cifar100"
    d = tmp_path / "cifar100" / "cifar-100-python"
    d.mkdir(parents=True)
    (tmp_path / "cifar100" / "cifar100_train_lt_if10.npz").symlink_to(src / "cifar100_train_lt_if10.npz")
    raw = bytearray((src / "cifar-100-python" / "test").read_bytes())
    assert hashlib.md5(raw).hexdigest() == OFFICIAL_TEST_MD5["cifar100-lt"]
    (d / "test").write_bytes(raw)
    assert len(CIFAR100_LT.load(tmp_path, 200).train_y) == 9502  # intact: loads (published IF=200 size)
    raw[-100] ^= 0xFF  # one pixel byte of the last test image: the pickle still loads, sizes still official
    (d / "test").write_bytes(raw)
    with pytest.raises(LtbenchError, match="md5 .* is not the official cifar100-lt test file's"):
        CIFAR100_LT.load(tmp_path, 50)  # another IF: not the lru-cached load above


def test_issue_worst_case_cifar10_file_under_the_cifar100_name(tmp_path, shared_data):
    """`run` on a data root whose cifar100_train_lt_if10.npz is the CIFAR-10 one: one error line, exit 2."""
    root = tmp_path / "data"
    (root / "cifar100" / "cifar-100-python").mkdir(parents=True)
    (root / "cifar100" / "cifar100_train_lt_if10.npz").symlink_to(shared_data / "cifar10" / "cifar10_train_lt_if10.npz")
    (root / "cifar100" / "cifar-100-python" / "test").symlink_to(shared_data / "cifar100" / "cifar-100-python" / "test")
    r = CliRunner().invoke(bench.cli, ["run", "--method", "ce", "--dataset", "cifar100-lt", "--data-root", str(root),
                                       "--results", str(tmp_path / "res"), "--quiet", "--device", "cpu"])
    assert r.exit_code == 2, (r.output, r.exception)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "cifar100_train_lt_if10.npz" in r.stderr and "has 10 classes, expected 100" in r.stderr
    assert not (tmp_path / "res" / "runs").exists() or not any((tmp_path / "res" / "runs").rglob("config.json"))


# ------------------------------------------------------------------------------------------------- stage-1 cache


def test_stage1_cache_is_keyed_by_the_data_actually_loaded(tmp_path, monkeypatch):
    """The issue's scenario end to end: a run on tampered data, then the same command on good data, must not reuse
    the stage-1 network trained on the tampered data (before: one cache folder per config, "reusing")."""
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path / "cache"))
    preset = write_preset(tmp_path / "p.toml", epochs=1, stage2_epochs=1)
    bad = _copy_tiny(tmp_path / "bad")
    with np.load(bad / "train.npz") as z:
        data = 255 - z["data"]  # every training image inverted: same classes and sizes, other pixels
    _rewrite(bad / "train.npz", data=data)
    good = _copy_tiny(tmp_path / "good")

    def run(root: Path, results: str):
        r = CliRunner().invoke(bench.cli, ["run", "--method", "ce", "--dataset", "cifar10-lt-tiny", "--preset",
                                           str(preset), "--data-root", str(root), "--results",
                                           str(tmp_path / results), "--device", "cpu"])
        assert r.exit_code == 0, (r.output, r.exception)
        cfg = json.loads((tmp_path / results / "runs" / "cifar10-lt-tiny" / "sgd-ce" / "seed0" / "config.json")
                         .read_text())
        return r.stderr, cfg

    err_bad, cfg_bad = run(bad.parent, "res-bad")
    assert "stage 1 [sgd] epoch 1/1" in err_bad
    err_good, cfg_good = run(good.parent, "res-good")  # the data root fixed, the same config
    assert "reusing" not in err_good and "stage 1 [sgd] epoch 1/1" in err_good, err_good
    assert cfg_bad["stage1_cache"] != cfg_good["stage1_cache"]
    assert cfg_bad["stage1_key"] == cfg_good["stage1_key"]  # the config alone could not tell them apart
    fp_good = get_dataset("cifar10-lt-tiny").load(None, None).fingerprint()
    assert cfg_good["train_data_fingerprint"] == fp_good != cfg_bad["train_data_fingerprint"]
    assert Path(cfg_good["stage1_cache"]).name.endswith(f"-d{fp_good[:8]}")
    good_run = tmp_path / "res-good" / "runs" / "cifar10-lt-tiny" / "sgd-ce" / "seed0"
    assert isinstance(cfg_good["unstable"], list) and check_run(good_run) == []  # the flag is recorded (audited)
    # the bundled set holds the same bytes as the good copy: its run reuses that stage 1
    err_bundled, cfg_bundled = run(tmp_path / "no-such-root", "res-bundled")
    assert "stage 1: reusing" in err_bundled and cfg_bundled["stage1_cache"] == cfg_good["stage1_cache"]
