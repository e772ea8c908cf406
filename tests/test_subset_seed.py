"""The data-subset seed (issue 17): LDAM-DRW's ``rand_number``, default 0 (the protocol's subset).

Checked against an independent re-statement of LDAM-DRW's ``IMBALANCECIFAR10.gen_imbalanced_data`` loop on tiny
generated CIFAR pickles; names and cache keys change only for a non-zero seed.
"""
import numpy as np
import pytest

from ltbench.audit import check_all, check_run
from ltbench.config import resolve
from ltbench.data.cifar_lt import CIFAR10_LT, lt_indices
from ltbench.data.load import load_run_data
from ltbench.errors import LtbenchError
from ltbench.paths import parse_run_dir, run_dir_for, stage1_dir
from ltbench.registry import get_dataset
from ltbench.report.tables import aggregate, collect_runs
from report_fixtures import make_run
from test_cifar_lt import _write_tv_cifar10

PER_CLASS = 40  # a miniature CIFAR-10: 400 train images


def _write_pickles(root, seed=1):
    """torchvision-layout CIFAR-10 (5 train batches + test batch) with random pixels and shuffled labels."""
    return _write_tv_cifar10(root, per_class=PER_CLASS, seed=seed)


def _ldam_drw(targets, imb_factor, rand_number, cls_num=10):
    """LDAM-DRW imbalance_cifar.py, restated: np.random.seed(rand_number); exp profile; per class in label order
    np.random.shuffle(idx) and keep the first img_num."""
    np.random.seed(rand_number)
    img_max = len(targets) / cls_num
    img_num_per_cls = [int(img_max * (1 / imb_factor) ** (i / (cls_num - 1.0))) for i in range(cls_num)]
    targets_np = np.array(targets, dtype=np.int64)
    selected = []
    for the_class, the_img_num in zip(np.unique(targets_np), img_num_per_cls):
        idx = np.where(targets_np == the_class)[0]
        np.random.shuffle(idx)
        selected.extend(idx[:the_img_num])
    return np.array(selected)


@pytest.mark.parametrize("seed", [3, 2 ** 32 - 1])
@pytest.mark.parametrize("imb", [10, 100])
def test_nonzero_seed_matches_ldam_drw(tmp_path, seed, imb):
    data, labels = _write_pickles(tmp_path)
    want = _ldam_drw(labels.tolist(), imb, seed)
    np.testing.assert_array_equal(lt_indices(labels, 10, imb, seed=seed), want)
    ds = CIFAR10_LT.load(tmp_path, imb, verify=False, subset_seed=seed)
    np.testing.assert_array_equal(ds.train_y.numpy(), labels[want])
    np.testing.assert_array_equal(ds.train_x.numpy().reshape(len(want), -1), data[want])
    base = CIFAR10_LT.load(tmp_path, imb, verify=False)  # seed 0: another subset of the same sizes
    assert np.bincount(base.train_y.numpy()).tolist() == np.bincount(ds.train_y.numpy()).tolist()
    assert base.fingerprint() != ds.fingerprint()


def test_seed0_is_the_default_subset(tmp_path):
    _, labels = _write_pickles(tmp_path)
    np.testing.assert_array_equal(lt_indices(labels, 10, 100), _ldam_drw(labels.tolist(), 100, 0))
    a = CIFAR10_LT.load(tmp_path, 100, verify=False)
    b = CIFAR10_LT.load(tmp_path, 100, verify=False, subset_seed=0)
    assert a.fingerprint() == b.fingerprint()


def test_npz_only_refuses_a_nonzero_seed(tmp_path):
    """A superset npz under the data root, without the train pickles: refused before anything is read."""
    (tmp_path / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "cifar10_train_lt_if10.npz").write_bytes(b"")  # never read
    with pytest.raises(LtbenchError) as e:
        CIFAR10_LT.load(tmp_path, 100, subset_seed=5)
    msg = str(e.value)
    assert "subset seed 5 needs the official train pickles" in msg
    assert "cifar10_train_lt_if10.npz there holds only the seed-0 subsets' images" in msg
    assert "drop --subset-seed" in msg and "\n" not in msg


@pytest.mark.parametrize("spec", ["cifar10-lt", "cifar100-lt"])
def test_shipped_data_serves_only_the_protocol_subset(shared_data, spec):
    """../shared/data ships the IF=10 superset npz and the test file, no train pickles."""
    folder = shared_data / spec.replace("-lt", "")
    with pytest.raises(LtbenchError, match=r"subset seed 1 needs the official train pickles.*npz there holds only"):
        get_dataset(spec).load(folder, 100, subset_seed=1)


def test_pickles_win_over_the_npz_for_a_nonzero_seed(tmp_path):
    data, labels = _write_pickles(tmp_path)
    (tmp_path / "cifar10_train_lt_if10.npz").write_bytes(b"not an npz")  # would fail if it were read
    ds = CIFAR10_LT.load(tmp_path, 50, verify=False, subset_seed=7)
    np.testing.assert_array_equal(ds.train_y.numpy(), labels[_ldam_drw(labels.tolist(), 50, 7)])


def test_fixed_subsets_refuse_a_seed(tmp_path):
    for name in ("cifar10-lt-tiny", "cifar100-lt-tiny"):
        with pytest.raises(LtbenchError, match="fixed bundled subset.*drop --subset-seed"):
            get_dataset(name).load(None, None, subset_seed=1)
        with pytest.raises(LtbenchError, match="fixed train subset.*drop --subset-seed"):
            resolve("ce", name, None, "sgd", 0, "cifar-tiny", subset_seed=1)
    with pytest.raises(LtbenchError, match="fixed by its split list.*drop --subset-seed"):
        get_dataset("imagenet-lt").load(tmp_path, subset_seed=2)
    assert len(get_dataset("cifar10-lt-tiny").load(None, None, subset_seed=0).train_y) > 0


@pytest.mark.parametrize("bad", [-1, 2 ** 32, True, "3"])
def test_subset_seed_is_checked_like_seeds(bad):
    with pytest.raises(LtbenchError, match="subset seed"):
        resolve("ce", "cifar10-lt", 100, "sgd", 0, "cifar", subset_seed=bad)


def test_names_and_keys_change_only_for_a_nonzero_seed(tmp_path):
    kw = dict(epochs=2, results=str(tmp_path))
    c0 = resolve("ce", "cifar100-lt", 100, "sgd", 1, "cifar", **kw)
    c0b = resolve("ce", "cifar100-lt", 100, "sgd", 1, "cifar", subset_seed=0, **kw)
    c3 = resolve("ce", "cifar100-lt", 100, "sgd", 1, "cifar", subset_seed=3, **kw)
    assert run_dir_for(c0) == tmp_path / "runs" / "cifar100-lt-if100" / "sgd-ce" / "seed1"
    assert run_dir_for(c3) == tmp_path / "runs" / "cifar100-lt-if100-subset3" / "sgd-ce" / "seed1"
    assert c0.stage1_key() == c0b.stage1_key() != c3.stage1_key()
    assert stage1_dir(c0, "0123456789abcdef").name == f"cifar100-lt-if100-sgd-seed1-{c0.stage1_key()}-d01234567"
    assert stage1_dir(c3, "0123456789abcdef").name.startswith("cifar100-lt-if100-subset3-sgd-seed1-")
    assert c3.to_dict()["subset_seed"] == 3 and c0.to_dict()["subset_seed"] == 0
    p = parse_run_dir(run_dir_for(c3))
    assert (p.dataset, p.imbalance, p.subset_seed, p.stage1_mode, p.method, p.seed) == \
        ("cifar100-lt", 100, 3, "sgd", "ce", 1)
    assert parse_run_dir(run_dir_for(c0)).subset_seed == 0


def test_load_run_data_passes_the_seed(shared_data):
    cfg = resolve("ce", "cifar10-lt", 100, "sgd", 0, "cifar", subset_seed=4, data_root=str(shared_data))
    with pytest.raises(LtbenchError, match="subset seed 4 needs the official train pickles"):
        load_run_data(cfg)
    assert load_run_data(resolve("ce", "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny")).name == "cifar10-lt-tiny"


def test_audit_and_tables_treat_a_subset_as_its_own_setting(tmp_path):
    for s in range(2):
        make_run(tmp_path, "ce", "sgd", s, 0.5)
        make_run(tmp_path, "ce", "sgd", s, 0.6, subset_seed=3)
    problems = check_all(tmp_path)
    assert len(problems) == 4 and not any(problems.values())
    runs = collect_runs(tmp_path).runs
    assert sorted(set(runs.dataset_tag)) == ["cifar10-lt-if100", "cifar10-lt-if100-subset3"]
    agg = aggregate(runs)
    assert sorted(zip(agg.dataset_tag, agg.n)) == [("cifar10-lt-if100", 2), ("cifar10-lt-if100-subset3", 2)]
    # a subset run moved under the protocol's folder name no longer matches its config
    d, _ = make_run(tmp_path / "moved", "ce", "sgd", 0, 0.6, subset_seed=3)
    target = tmp_path / "moved" / "runs" / "cifar10-lt-if100" / "sgd-ce" / "seed0"
    target.parent.mkdir(parents=True)
    d.rename(target)
    assert any("does not match its config" in p for p in check_run(target))


def test_a_finished_run_of_another_subset_is_another_run(tmp_path):
    """runner.finished_run_differs: a config without subset_seed (written before it existed) is subset 0."""
    import json

    from ltbench.runner import finished_run_differs
    cfg = resolve("ce", "cifar10-lt", 100, "sgd", 0, "cifar", epochs=2, results=str(tmp_path))
    old = json.loads(json.dumps(cfg.to_dict(), default=str))
    del old["subset_seed"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert finished_run_differs(cfg, tmp_path) is None
    old["subset_seed"] = 3
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert finished_run_differs(cfg, tmp_path) == "another run: subset_seed 3 there, 0 asked"
