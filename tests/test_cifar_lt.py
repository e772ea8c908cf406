"""CIFAR-LT construction: sizes from the LDAM-DRW profile, index order against the shipped lists, both readers."""
import pickle

import numpy as np
import pytest

from ltbench.data.cifar_lt import CIFAR10_LT, CIFAR100_LT, lt_class_counts, lt_indices
from ltbench.errors import LtbenchError
from ltbench.metrics import shot_groups

# published sizes (Cao et al. 2019 / the issue), not derived from our code
SIZES = {"cifar100-lt": {10: 19573, 50: 12608, 100: 10847, 200: 9502},
         "cifar10-lt": {10: 20431, 50: 13996, 100: 12406, 200: 11203}}


@pytest.mark.parametrize("spec", [CIFAR10_LT, CIFAR100_LT], ids=lambda s: s.name)
@pytest.mark.parametrize("imb", [10, 50, 100, 200])
def test_train_sizes_from_profile(spec, imb):
    assert spec.train_size(imb) == SIZES[spec.name][imb]


def test_cifar10_if100_per_class_counts():
    assert lt_class_counts(10, 5000, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_cifar100_if100_groups():
    g = shot_groups(np.array(lt_class_counts(100, 500, 100)))
    assert (g["many"].sum(), g["medium"].sum(), g["few"].sum()) == (35, 35, 30)


@pytest.mark.parametrize("folder,npz,spec", [("cifar100", "cifar100_train_lt_if10.npz", CIFAR100_LT),
                                             ("cifar10", "cifar10_train_lt_if10.npz", CIFAR10_LT)])
@pytest.mark.parametrize("imb", [10, 50, 100, 200])
def test_index_order_equals_shipped_lists(shared_data, folder, npz, spec, imb):
    z = np.load(shared_data / folder / npz)
    ours = lt_indices(z["train_labels_full"], spec.num_classes, imb)
    np.testing.assert_array_equal(ours, z[f"lt_index_if{imb}"])
    data = spec.load(shared_data, imb)
    assert len(data.train_y) == SIZES[spec.name][imb] and len(data.test_y) == 10000
    np.testing.assert_array_equal(data.train_y.numpy(), z["train_labels_full"][z[f"lt_index_if{imb}"]])
    # the first image of the set is the stored row of its original index
    row = int(np.flatnonzero(z["original_index"] == z[f"lt_index_if{imb}"][0])[0])
    np.testing.assert_array_equal(data.train_x[0].numpy().reshape(-1), z["data"][row])
    assert np.bincount(data.test_y.numpy()).tolist() == [10000 // spec.num_classes] * spec.num_classes


def _write_tv_cifar10(root, per_class=40, seed=0):
    """A miniature torchvision-layout CIFAR-10 (5 train batches + test batch) with random pixels."""
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 5)):
        with open(d / f"data_batch_{i + 1}", "wb") as f:
            pickle.dump({"data": data[part], "labels": labels[part].tolist()}, f)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({"data": data[:50], "labels": labels[:50].tolist()}, f)
    return data, labels


def test_torchvision_layout_reader(tmp_path):
    data, labels = _write_tv_cifar10(tmp_path)
    ds = CIFAR10_LT.load(tmp_path, 10, verify=False)  # a miniature: not the official sizes (test_data_identity.py)
    # independent re-statement of LDAM-DRW's loop: seed 0 once, shuffle each class's indices, keep a prefix
    np.random.seed(0)
    want = []
    for c in range(10):
        idx = np.where(labels == c)[0]
        np.random.shuffle(idx)
        want.extend(idx[: int(40 * (0.1 ** (c / 9)))])
    np.testing.assert_array_equal(ds.train_y.numpy(), labels[want])
    np.testing.assert_array_equal(ds.train_x.numpy().reshape(len(want), -1), data[want])


def test_errors_are_clear(tmp_path):
    with pytest.raises(LtbenchError, match="does not exist"):
        CIFAR10_LT.load(tmp_path / "nope", 100)
    with pytest.raises(LtbenchError, match="looked for"):
        CIFAR10_LT.load(tmp_path, 100)
    with pytest.raises(LtbenchError, match="unsupported imbalance factor 7"):
        CIFAR10_LT.load(tmp_path, 7)
    _write_tv_cifar10(tmp_path)
    p = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(LtbenchError, match="truncated or corrupt"):
        CIFAR10_LT.load(tmp_path, 100)
