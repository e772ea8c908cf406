"""CIFAR-10-LT and CIFAR-100-LT exactly as Cao et al. (LDAM-DRW, ``imbalance_cifar.py``) build them.

For 0-indexed class c: n_c = int(n_max * (1/IF) ** (c / (C - 1))); ``np.random.seed(0)`` once, then per class
(in label order) shuffle that class's indices in the official train order and keep the first n_c. The test set
is the official balanced one. Another subset seed (``--subset-seed``, LDAM-DRW's ``rand_number``) replaces the 0;
it needs the official train pickles, since the superset npz holds only the seed-0 images.

Readers accept, under ``--data-root``, torchvision's layout (``cifar-10-batches-py/``, ``cifar-100-python/``,
optionally inside a ``cifar10/`` / ``cifar100/`` folder) and the long-tail superset npz files
(``cifar10_train_lt_if10.npz``, ``cifar100_train_lt_if10.npz``) that hold every image any IF in {10, 50, 100, 200}
uses. The tiny sets ship inside the package (a ``<data root>/<tiny name>/`` folder, when given, is read instead).

Every loader checks the identity of what it read before anything trains, so a wrong file is refused with one line
instead of being trained on under the right name: the class count, the official set sizes (50,000 train labels,
10,000 test images, the LDAM-DRW per-class counts of the chosen IF and of the IF=10 superset) and the md5 of the
official test file (torchvision's values). ``load(..., verify=False)`` skips these for a home-made CIFAR-format
set; the structural checks (shapes, label range) always apply.
"""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import LtbenchError
from ..registry import register_dataset
from .base import TensorLTData

BUNDLED = Path(__file__).parent / "bundled"
IMBALANCE_FACTORS = (10, 50, 100, 200)
GET_DATA_HELP = (
    "Download the official CIFAR python archives (https://www.cs.toronto.edu/~kriz/cifar.html), unpack them under "
    "the data root (torchvision's CIFAR10/CIFAR100(root, download=True) does this), or point --data-root / "
    "$LTBENCH_DATA_ROOT at a folder that has them."
)


def lt_class_counts(num_classes: int, n_max: int, imbalance: int) -> list[int]:
    """Images per class of the exponential long-tail profile (truncation, as LDAM-DRW)."""
    f = 1.0 / imbalance
    return [int(n_max * f ** (c / (num_classes - 1.0))) for c in range(num_classes)]


def lt_indices(train_labels_full: np.ndarray, num_classes: int, imbalance: int, seed: int = 0) -> np.ndarray:
    """Positions (in the official train order) of the LDAM-DRW long-tail set, in LDAM-DRW order.

    ``seed`` is LDAM-DRW's ``rand_number`` (0 in the protocol): ``np.random.seed(seed)``, then one
    ``np.random.shuffle`` per class in label order."""
    labels = np.asarray(train_labels_full)
    n_max = len(labels) // num_classes
    counts = lt_class_counts(num_classes, n_max, imbalance)
    rng = np.random.RandomState(seed)  # == np.random.seed(seed) then np.random.shuffle: the same MT19937 stream
    out = []
    for c, n_c in zip(range(num_classes), counts):
        idx = np.where(labels == c)[0]
        rng.shuffle(idx)
        out.append(idx[:n_c])
    return np.concatenate(out).astype(np.int64)


def _rows_to_images(rows: np.ndarray) -> torch.Tensor:
    """CIFAR rows uint8 [N, 3072] (R, G, B planes) -> uint8 [N, 3, 32, 32]."""
    return torch.from_numpy(np.ascontiguousarray(rows.reshape(-1, 3, 32, 32)))


def _load_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
        raise LtbenchError(f"cannot read {path}: {type(e).__name__}: {e}. The file is truncated or corrupt; "
                           f"delete it and download it again. {GET_DATA_HELP}") from None


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as e:
        raise LtbenchError(f"cannot read {path}: {type(e).__name__}: {e}. The file is truncated or corrupt; "
                           "replace it with a good copy.") from None


def file_md5(path: Path) -> str:
    """md5 of a file, read in 1 MiB chunks (~50 ms for a 31 MB CIFAR test pickle)."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_class_counts(where: str, labels: np.ndarray, want: list[int], what: str, fix: str) -> None:
    """Refuse ``labels`` unless their per-class counts are exactly ``want`` (class count first: the usual mix-up)."""
    labels = np.asarray(labels)
    k = len(np.unique(labels))
    if k != len(want):
        raise LtbenchError(f"{where}: the {what} has {k} classes, expected {len(want)}: it holds another dataset "
                           f"(e.g. CIFAR-10 files under a CIFAR-100 name). {fix}")
    have = np.bincount(labels, minlength=len(want)).tolist()
    if have != list(want):
        bad = next(c for c in range(len(want)) if have[c] != want[c])
        raise LtbenchError(f"{where}: the {what} has {len(labels):,} images ({have[bad]} in class {bad}), expected "
                           f"{sum(want):,} ({want[bad]} in class {bad}): it is not the official set. {fix}")


def _pickle_arrays(spec: "CifarLTSpec", path: Path, obj: object) -> tuple[np.ndarray, np.ndarray]:
    """(image rows, labels) of a CIFAR python pickle, or one clear error when the file is something else (another
    CIFAR's file under this name: CIFAR-10 has ``labels``, CIFAR-100 ``fine_labels``; or not a batch at all)."""
    if not isinstance(obj, dict):
        raise LtbenchError(f"{path}: holds a {type(obj).__name__}, not a CIFAR batch (a dict with 'data' and "
                           f"{spec.label_key!r}); the file is not a {spec.name} file. {_fix(spec)}")
    missing = [k for k in ("data", spec.label_key) if k not in obj]
    if missing:
        other = " (it has 'labels': a CIFAR-10 file)" if "labels" in obj and spec.label_key != "labels" else \
            " (it has 'fine_labels': a CIFAR-100 file)" if "fine_labels" in obj and spec.label_key != "fine_labels" \
            else ""
        raise LtbenchError(f"{path}: no {', '.join(map(repr, missing))} entry{other}; the file is not a "
                           f"{spec.name} file. {_fix(spec)}")
    return np.asarray(obj["data"]), np.asarray(obj[spec.label_key], dtype=np.int64)


def _check_arrays(path: Path, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    if images.ndim != 2 or images.shape[1] != 3072 or images.dtype != np.uint8:
        raise LtbenchError(f"{path}: image rows must be uint8 [N, 3072], got {images.dtype} {images.shape}; "
                           "the file is not a CIFAR file in the expected layout.")
    if len(images) != len(labels):
        raise LtbenchError(f"{path}: {len(images)} images but {len(labels)} labels; the file is corrupt.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise LtbenchError(f"{path}: labels outside [0, {num_classes - 1}] (found {labels.min()}..{labels.max()}); "
                           "the file belongs to another dataset or is corrupt.")


@dataclass(frozen=True)
class CifarLTSpec:
    """One CIFAR-LT family (10 or 100 classes): where its files are and how to build any imbalance factor."""

    name: str
    num_classes: int
    folder: str          # e.g. "cifar100"
    tv_dir: str          # torchvision's folder name
    train_files: tuple[str, ...]
    test_file: str
    label_key: str
    npz_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    test_md5: str        # md5 of the official test file (torchvision's CIFAR10 / CIFAR100 test_list)

    imbalance_factors = IMBALANCE_FACTORS
    needs_data_root = True
    random_subset = True  # the long-tailed subset is drawn with a NumPy seed (--subset-seed; 0 = LDAM-DRW's)
    default_imbalance = 100
    preset = "cifar"
    test_size = 10000     # the official test set, balanced (checked against its md5 on load)

    def train_size(self, imbalance: int) -> int:
        return sum(lt_class_counts(self.num_classes, 50000 // self.num_classes, imbalance))

    def describe(self) -> str:
        sizes = ", ".join(f"IF {i}: {self.train_size(i):,}" for i in IMBALANCE_FACTORS)
        return f"{self.num_classes} classes; train {sizes}; test {self.test_size:,} (balanced)"

    def _candidates(self, root: Path) -> list[Path]:
        return [root / self.folder, root]

    def _find(self, root: Path, rel: str) -> Path | None:
        for base in self._candidates(root):
            if (base / rel).is_file():
                return base / rel
        return None

    def load(self, data_root: Path | str | None, imbalance: int | None, verify: bool = True,
             subset_seed: int = 0) -> TensorLTData:
        """The IF=``imbalance`` long-tail set drawn with NumPy seed ``subset_seed`` (0: LDAM-DRW's own subset)."""
        imbalance = self.default_imbalance if imbalance is None else int(imbalance)
        if imbalance not in IMBALANCE_FACTORS:
            raise LtbenchError(f"{self.name}: unsupported imbalance factor {imbalance}; "
                               f"supported: {', '.join(map(str, IMBALANCE_FACTORS))}")
        from ..config import check_seed
        try:
            subset_seed = check_seed(subset_seed, "subset seed")
        except ValueError as e:
            raise LtbenchError(f"{self.name}: {e}") from None
        if data_root is None:
            from .base import default_data_root
            data_root = default_data_root()
        return _load_cifar_lt(self, Path(data_root).expanduser().resolve(), imbalance, bool(verify), subset_seed)

    def check_subset_seed(self, data_root: Path | str | None, subset_seed: int) -> None:
        """Before any work (the grid's plan): the files a non-zero ``subset_seed`` needs are there, or the same
        error :meth:`load` would give. Cheap: looks for files, reads none."""
        if data_root is None:
            from .base import default_data_root
            data_root = default_data_root()
        _require_pickles_for_subset(self, Path(data_root).expanduser().resolve(), subset_seed)


def _missing(spec: CifarLTSpec, root: Path, what: str, tried: list[Path]) -> LtbenchError:
    where = ", ".join(str(p) for p in tried)
    return LtbenchError(f"{spec.name}: no {what} found under data root {root} (looked for: {where}). {GET_DATA_HELP}")


def _fix(spec: CifarLTSpec) -> str:
    return f"Put the official CIFAR-{spec.num_classes} files under the data root. {GET_DATA_HELP}"


def _verify_full_train_labels(spec: CifarLTSpec, where: Path, labels: np.ndarray) -> None:
    """The whole official train set: 50,000 labels, 50,000 / C per class."""
    _check_class_counts(str(where), labels, [50000 // spec.num_classes] * spec.num_classes,
                        f"{spec.name} full train label list", _fix(spec))


def _verify_npz(spec: CifarLTSpec, path: Path, z: dict[str, np.ndarray]) -> None:
    """The IF=10 superset npz: official full train labels, the superset's size, each listed IF's size."""
    _verify_full_train_labels(spec, path, z["train_labels_full"])
    C = spec.num_classes
    _check_class_counts(str(path), z["labels"], lt_class_counts(C, 50000 // C, 10),
                        "IF=10 long-tail superset (LDAM-DRW)", _fix(spec))
    for imb in IMBALANCE_FACTORS:
        listed = z.get(f"lt_index_if{imb}")
        if listed is not None and len(listed) != spec.train_size(imb):
            raise LtbenchError(f"{path}: lt_index_if{imb} lists {len(listed):,} images, the LDAM-DRW IF={imb} set "
                               f"of {spec.name} has {spec.train_size(imb):,}; the file is from another build. "
                               + _fix(spec))


def _verify_test(spec: CifarLTSpec, path: Path, labels: np.ndarray) -> None:
    """The official balanced test set: 10,000 images, 10,000 / C per class, and the official file's md5."""
    _check_class_counts(str(path), labels, [spec.test_size // spec.num_classes] * spec.num_classes,
                        f"{spec.name} test set", _fix(spec))
    md5 = file_md5(path)
    if md5 != spec.test_md5:
        raise LtbenchError(f"{path}: md5 {md5} is not the official {spec.name} test file's ({spec.test_md5}); "
                           f"the file was modified or comes from another source. {_fix(spec)}")


def _require_pickles_for_subset(spec: "CifarLTSpec", root: Path, subset_seed: int) -> None:
    """A non-zero subset seed draws from all 50,000 official train images: refuse it, naming the missing files,
    when the data root has only the superset npz (which holds the seed-0 subsets' images). Reads nothing."""
    if not subset_seed:
        return
    if all(spec._find(root, f"{spec.tv_dir}/{f}") is not None for f in spec.train_files):
        return
    npz_path = spec._find(root, spec.npz_name)
    where = " and ".join(str(b / spec.tv_dir) for b in spec._candidates(root))
    raise LtbenchError(
        f"{spec.name}: subset seed {subset_seed} needs the official train pickles (all 50,000 images: "
        f"{', '.join(spec.train_files)}), not found in {where}"
        + (f"; {npz_path.name} there holds only the seed-0 subsets' images" if npz_path is not None else "")
        + f". Put them there, or drop --subset-seed. {GET_DATA_HELP}")


@lru_cache(maxsize=4)
def _load_cifar_lt(spec: CifarLTSpec, root: Path, imbalance: int, verify: bool = True,
                   subset_seed: int = 0) -> TensorLTData:
    if not root.is_dir():
        raise LtbenchError(f"{spec.name}: data root {root} does not exist. {GET_DATA_HELP}")
    # where the train set comes from: the LT superset npz, else the official train pickles (always the pickles for
    # a non-zero subset seed: the npz holds only the images of the seed-0 subsets; refused before anything is read)
    npz_path = spec._find(root, spec.npz_name)
    pickle_paths = [spec._find(root, f"{spec.tv_dir}/{f}") for f in spec.train_files]
    have_pickles = all(p is not None for p in pickle_paths)
    _require_pickles_for_subset(spec, root, subset_seed)
    # --- test set: the official balanced pickle
    test_rel = f"{spec.tv_dir}/{spec.test_file}"
    test_path = spec._find(root, test_rel)
    if test_path is None:
        raise _missing(spec, root, "test set", [b / test_rel for b in spec._candidates(root)])
    t = _load_pickle(test_path)
    test_rows, test_y = _pickle_arrays(spec, test_path, t)
    _check_arrays(test_path, test_rows, test_y, spec.num_classes)

    # --- train set: the LT superset npz, else the official train pickles (always them for a non-zero subset seed:
    # the npz holds only the images of the seed-0 subsets)
    if npz_path is not None and not subset_seed:
        z = _load_npz(npz_path)
        for key in ("data", "labels", "original_index", "train_labels_full"):
            if key not in z:
                raise LtbenchError(f"{npz_path}: missing array {key!r}; the file is not an ltbench/LDAM-DRW "
                                   "long-tail superset. Replace it, or remove it to use the official pickles.")
        _check_arrays(npz_path, z["data"], z["labels"], spec.num_classes)
        if verify:
            _verify_npz(spec, npz_path, z)
        want = lt_indices(z["train_labels_full"], spec.num_classes, imbalance)  # seed 0: the npz's subsets
        listed = z.get(f"lt_index_if{imbalance}")
        if listed is not None and not np.array_equal(listed, want):
            raise LtbenchError(f"{npz_path}: its lt_index_if{imbalance} list does not match the LDAM-DRW "
                               "construction from its own labels; the file is corrupt or from another build.")
        row_of = {int(i): r for r, i in enumerate(z["original_index"])}
        missing = [int(i) for i in want if int(i) not in row_of]
        if missing:
            raise LtbenchError(f"{npz_path}: {len(missing)} images of the IF={imbalance} set are not in the file "
                               f"(e.g. train position {missing[0]}); it does not hold this imbalance factor. "
                               "Use the official train pickles instead.")
        pick = np.array([row_of[int(i)] for i in want])
        train_rows, train_y = z["data"][pick], z["labels"][pick].astype(np.int64)
        if not np.array_equal(train_y, z["train_labels_full"][want]):
            raise LtbenchError(f"{npz_path}: row labels disagree with train_labels_full; the file is corrupt.")
    else:
        paths = pickle_paths
        if not have_pickles:
            tried = [b / spec.tv_dir / f for b in spec._candidates(root) for f in spec.train_files]
            tried += [b / spec.npz_name for b in spec._candidates(root)]
            raise _missing(spec, root, "training set", tried)
        parts = [_pickle_arrays(spec, p, _load_pickle(p)) for p in paths]
        rows = np.concatenate([r for r, _ in parts])
        labels = np.concatenate([y for _, y in parts])
        _check_arrays(paths[0], rows, labels, spec.num_classes)
        if verify:
            _verify_full_train_labels(spec, paths[0].parent, labels)
        want = lt_indices(labels, spec.num_classes, imbalance, subset_seed)
        train_rows, train_y = rows[want], labels[want]
    if verify:
        _check_class_counts(f"{spec.name} IF={imbalance} under {root}", train_y,
                            lt_class_counts(spec.num_classes, 50000 // spec.num_classes, imbalance),
                            "long-tail train set", _fix(spec))
        _verify_test(spec, test_path, test_y)
    return TensorLTData(
        name=spec.name, num_classes=spec.num_classes,
        train_x=_rows_to_images(train_rows), train_y=torch.from_numpy(train_y),
        test_x=_rows_to_images(test_rows), test_y=torch.from_numpy(test_y),
        mean=torch.tensor(spec.mean), std=torch.tensor(spec.std), imbalance=imbalance,
    )


@dataclass(frozen=True)
class TinySpec:
    """A tiny CIFAR-LT subset bundled inside the package (for CI and the quick start; no data root needed).

    Built deterministically: the first ``int(train_max * (1/IF) ** (c/(C-1)))`` train and ``test_per_class`` test
    images of each class c in official order, so the loader checks the class count and those sizes.
    """

    name: str
    num_classes: int
    folder: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    nominal_if: int
    train_max: int       # images of class 0 in the train set
    test_per_class: int

    imbalance_factors = ()
    needs_data_root = False
    default_imbalance = None
    preset = "cifar-tiny"
    random_subset = False  # a fixed subset: --subset-seed does not apply

    def describe(self) -> str:
        y = np.load(BUNDLED / self.folder / "train.npz")["labels"]
        ty = np.load(BUNDLED / self.folder / "test.npz")["labels"]
        c = np.bincount(y, minlength=self.num_classes)
        return (f"{self.num_classes} classes; bundled; train {len(y)} (IF {c.max() // max(c.min(), 1)}), "
                f"test {len(ty)} (balanced)")

    def source(self, data_root: Path | str | None = None) -> Path:
        """``<data_root>/<name>/`` when a data root is given and has that folder, else the bundled copy."""
        if data_root is not None and (Path(data_root).expanduser() / self.folder).is_dir():
            return Path(data_root).expanduser().resolve() / self.folder
        return BUNDLED / self.folder

    def load(self, data_root=None, imbalance: int | None = None, subset_seed: int = 0) -> TensorLTData:
        if imbalance is not None:
            raise LtbenchError(f"{self.name} is a fixed bundled subset (IF {self.nominal_if}); drop --imbalance")
        if subset_seed:
            raise LtbenchError(f"{self.name} is a fixed bundled subset (the first images of each class, no random "
                               f"draw); drop --subset-seed (got {subset_seed})")
        src = self.source(data_root)
        tr, te = _load_npz(src / "train.npz"), _load_npz(src / "test.npz")
        fix = f"Use the {self.name} files shipped in ltbench/data/bundled/{self.folder}/."
        for split, z, want in (
                ("train", tr, lt_class_counts(self.num_classes, self.train_max, self.nominal_if)),
                ("test", te, [self.test_per_class] * self.num_classes)):
            for key in ("data", "labels"):
                if key not in z:
                    raise LtbenchError(f"{src / f'{split}.npz'}: missing array {key!r}; not a {self.name} file. {fix}")
            _check_arrays(src / f"{split}.npz", z["data"], z["labels"], self.num_classes)
            _check_class_counts(str(src / f"{split}.npz"), z["labels"], want, f"{self.name} {split} set", fix)
        return TensorLTData(
            name=self.name, num_classes=self.num_classes,
            train_x=_rows_to_images(tr["data"]), train_y=torch.from_numpy(tr["labels"].astype(np.int64)),
            test_x=_rows_to_images(te["data"]), test_y=torch.from_numpy(te["labels"].astype(np.int64)),
            mean=torch.tensor(self.mean), std=torch.tensor(self.std), imbalance=None,
        )


CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

CIFAR10_LT = register_dataset("cifar10-lt")(CifarLTSpec(
    "cifar10-lt", 10, "cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test_batch", "labels", "cifar10_train_lt_if10.npz", CIFAR10_MEAN, CIFAR10_STD, "40351d587109b95175f43aff81a1287e"))
CIFAR100_LT = register_dataset("cifar100-lt")(CifarLTSpec(
    "cifar100-lt", 100, "cifar100", "cifar-100-python", ("train",), "test", "fine_labels",
    "cifar100_train_lt_if10.npz", CIFAR100_MEAN, CIFAR100_STD, "f0ef6b0ae62326f3e7ffdfab6717acfc"))
register_dataset("cifar10-lt-tiny")(TinySpec("cifar10-lt-tiny", 10, "cifar10-lt-tiny", CIFAR10_MEAN, CIFAR10_STD,
                                             10, 50, 20))
register_dataset("cifar100-lt-tiny")(TinySpec("cifar100-lt-tiny", 100, "cifar100-lt-tiny", CIFAR100_MEAN,
                                              CIFAR100_STD, 8, 8, 4))
