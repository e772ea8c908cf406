"""ImageNet-LT and iNaturalist-2018: an image root plus ``<relative path> <label>`` split lists (OLTR / Kang et al.).

List resolution for each split, first hit wins: an explicit path (``train_list=`` / ``test_list=`` load options,
the ``[data]`` preset table, or ``--train-list`` on ``bench.py data``), ``$LTBENCH_SPLITS/<file>[.gz]``,
``<data root>/<file>[.gz]``, then the gzipped copy shipped in ``ltbench/data/splits/`` (ImageNet-LT val/test and
iNat-2018 val only: the train lists cannot be redistributed here, so the user supplies them).

Images are decoded per sample in DataLoader workers (Pillow) with RandomResizedCrop + flip for training and
resize + centre crop for evaluation, or, with ``decode="gpu"``, read as bytes in workers and decoded in batches
with ``torchvision.io.decode_jpeg(device="cuda")`` (nvJPEG). Each sample's augmentation is seeded from the epoch's
generator and its position in the global order, so the same images and crops reach the network on any number of
workers or DDP ranks.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import LtbenchError
from ..registry import register_dataset
from .augment import normalize
from .base import Batch, LabelsFromTensors, default_data_root, fingerprint_parts
from .samplers import class_balanced_indices, instance_indices

PACKAGE_SPLITS = Path(__file__).parent / "splits"
SPLITS_ENV = "LTBENCH_SPLITS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DECODE_MODES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class ListFile:
    """One split list and what is published about it (to verify a user's copy and to say how to get it)."""

    filename: str
    lines: int | None = None
    size: int | None = None
    sha256: str | None = None

    def describe(self) -> str:
        facts = [f"{self.lines:,} lines" if self.lines else None, f"{self.size:,} bytes" if self.size else None,
                 f"sha256 {self.sha256}" if self.sha256 else None]
        return f"{self.filename} ({', '.join(f for f in facts if f)})"


def read_list(path: Path) -> tuple[list[str], np.ndarray]:
    """Parse ``<relative path> <label>`` lines (plain or gzip). Paths may contain spaces; the label is last."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as e:
        raise LtbenchError(f"cannot read split list {path}: {type(e).__name__}: {e}") from None
    paths: list[str] = []
    labels: list[int] = []
    for no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise LtbenchError(f"{path}:{no}: expected '<relative path> <label>', got {line!r}")
        try:
            labels.append(int(parts[1]))
        except ValueError:
            raise LtbenchError(f"{path}:{no}: label {parts[1]!r} is not an integer") from None
        paths.append(parts[0])
    if not paths:
        raise LtbenchError(f"split list {path} is empty")
    return paths, np.asarray(labels, dtype=np.int64)


def sha256_of_list(path: Path) -> str:
    """sha256 of the uncompressed list (what the data README publishes)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return hashlib.sha256(raw).hexdigest()


def shot_counts(class_counts: np.ndarray) -> dict[str, int]:
    """Many / medium / few class counts with the thresholds ``ltbench.metrics`` uses (>100, 20..100, <20)."""
    from ..metrics import shot_groups
    return {k: int(v.sum()) for k, v in shot_groups(class_counts).items()}


@dataclass(frozen=True)
class FileListSpec:
    """A dataset given by split lists over an image root. ``splits`` maps split name -> list file; ``test_split``
    names the split evaluated as the test set (iNat-2018 has no test list: its val list is the test set)."""

    name: str
    num_classes: int
    splits: tuple[tuple[str, ListFile], ...]
    test_split: str
    how_to_get: str
    preset: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    imbalance_factors = ()
    needs_data_root = True
    default_imbalance = None
    random_subset = False  # the train list fixes the subset: --subset-seed does not apply

    @property
    def split_files(self) -> dict[str, ListFile]:
        return dict(self.splits)

    def describe(self) -> str:
        parts = []
        for split, lf in self.splits:
            shipped = (PACKAGE_SPLITS / (lf.filename + ".gz")).is_file()
            n = f"{lf.lines:,}" if lf.lines else "?"
            parts.append(f"{split} {n}{'' if shipped else ' (list not shipped)'}")
        return f"{self.num_classes:,} classes; " + ", ".join(parts) + f"; test = {self.test_split}"

    def find_list(self, split: str, data_root: Path | str | None = None,
                  override: Path | str | None = None) -> Path:
        """The list file for ``split`` by the resolution order in the module docstring, or a clear error."""
        if split not in self.split_files:
            raise LtbenchError(f"{self.name} has no split {split!r}; splits: {', '.join(self.split_files)}")
        lf = self.split_files[split]
        if override is not None:
            p = Path(override).expanduser()
            if not p.is_file():
                raise LtbenchError(f"{self.name}: the {split} list {p} given explicitly does not exist")
            return p
        tried: list[Path] = []
        bases = [Path(os.environ[SPLITS_ENV]).expanduser()] if os.environ.get(SPLITS_ENV) else []
        if data_root is not None:
            bases.append(Path(data_root).expanduser())
        for base in bases:
            for fn in (lf.filename, lf.filename + ".gz"):
                tried.append(base / fn)
                if (base / fn).is_file():
                    return base / fn
        shipped = PACKAGE_SPLITS / (lf.filename + ".gz")
        if shipped.is_file():
            return shipped
        where = ", ".join(str(t) for t in tried) or "(no data root or $LTBENCH_SPLITS given)"
        raise LtbenchError(
            f"{self.name}: split list {lf.filename} not found (looked in: {where}; it is not shipped in the "
            f"package). Expected file: {lf.describe()}. {self.how_to_get} Put it in the data root, in "
            f"${SPLITS_ENV}, or pass its path explicitly (--train-list / [data] train_list).")

    def read_split(self, split: str, data_root: Path | str | None = None,
                   override: Path | str | None = None) -> tuple[Path, list[str], np.ndarray]:
        p = self.find_list(split, data_root, override)
        paths, labels = read_list(p)
        bad = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
        if len(bad):
            i = int(bad[0])
            raise LtbenchError(f"{p}: {len(bad)} labels outside [0, {self.num_classes - 1}] (first: line {i + 1}, "
                               f"{paths[i]} {labels[i]}); the list belongs to another dataset")
        return p, paths, labels

    def load(self, data_root: Path | str | None = None, imbalance: int | None = None, *, image_size: int = 224,
             resize: int | None = None, workers: int | None = None, decode: str = "auto",
             train_list: str | None = None, test_list: str | None = None, check_files: int = 16,
             subset_seed: int = 0) -> "FileListLTData":
        """Parse and validate the lists; check the root exists and a sample of listed files is there."""
        if imbalance is not None:
            raise LtbenchError(f"{self.name} has a fixed imbalance (given by its train list); drop --imbalance")
        if subset_seed:
            raise LtbenchError(f"{self.name}: the train subset is fixed by its split list, not drawn at random; drop "
                               f"--subset-seed (got {subset_seed})")
        if decode not in DECODE_MODES:
            raise LtbenchError(f"{self.name}: decode must be one of {', '.join(DECODE_MODES)}, got {decode!r}")
        root = Path(data_root if data_root is not None else default_data_root()).expanduser().resolve()
        if not root.is_dir():
            raise LtbenchError(f"{self.name}: data root {root} does not exist; pass --data-root DIR holding the "
                               f"image folders (e.g. train/, val/). {self.how_to_get}")
        _, tr_paths, tr_y = self.read_split("train", root, train_list)
        _, te_paths, te_y = self.read_split(self.test_split, root, test_list)
        missing = sample_missing(root, tr_paths, check_files) + sample_missing(root, te_paths, check_files)
        if missing:
            raise LtbenchError(f"{self.name}: {len(missing)} of the sampled listed files are missing under {root}: "
                               + ", ".join(missing[:10]) + ". Check --data-root; `bench.py data check --dataset "
                               f"{self.name} --data-root {root}` lists every missing or corrupt file.")
        return FileListLTData(
            name=self.name, num_classes=self.num_classes, root=root, train_files=tr_paths,
            train_y=torch.from_numpy(tr_y), test_files=te_paths, test_y=torch.from_numpy(te_y),
            image_size=int(image_size), resize=int(resize) if resize else int(round(image_size * 256 / 224)),
            workers=default_workers() if workers is None else int(workers), decode=decode,
            mean=torch.tensor(self.mean), std=torch.tensor(self.std))


def sample_missing(root: Path, rel: Sequence[str], k: int) -> list[str]:
    """Which of a deterministic sample (first, last and ``k`` spread evenly) of listed files do not exist."""
    if k <= 0 or not rel:
        return []
    pick = sorted(set(np.linspace(0, len(rel) - 1, num=min(k, len(rel))).round().astype(int).tolist()))
    return [rel[i] for i in pick if not (root / rel[i]).is_file()]


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_workers() -> int:
    """Half the CPUs this process may use, at most 8 (per rank); 0 (in-process) on tiny machines."""
    n = usable_cpus()
    return 0 if n <= 2 else min(8, n // 2)


# ---------------------------------------------------------------- per-sample transforms


def rrc_params(h: int, w: int, g: torch.Generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
               ) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, height, width), torchvision's algorithm, drawn from ``g``."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(4, generator=g, dtype=torch.float64).tolist()
        target = area * (scale[0] + u[0] * (scale[1] - scale[0]))
        ar = math.exp(log_r[0] + u[1] * (log_r[1] - log_r[0]))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(u[2] * (h - ch + 1))
            left = int(u[3] * (w - cw + 1))
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def train_view(img, size: int, seed: int):
    """RandomResizedCrop(size) + horizontal flip (p=0.5) of a PIL image or uint8 [3,H,W] tensor, seeded."""
    from torchvision.transforms.v2 import functional as F
    g = torch.Generator().manual_seed(int(seed))
    w, h = (img.size if hasattr(img, "size") and not isinstance(img, torch.Tensor) else (img.shape[-1], img.shape[-2]))
    top, left, ch, cw = rrc_params(h, w, g)
    out = F.resized_crop(img, top, left, ch, cw, [size, size], antialias=True)
    if bool(torch.rand(1, generator=g) < 0.5):
        out = F.horizontal_flip(out)
    return out


def eval_view(img, size: int, resize: int):
    """Resize the shorter side to ``resize``, then centre crop ``size`` (ImageNet's 256 -> 224)."""
    from torchvision.transforms.v2 import functional as F
    return F.center_crop(F.resize(img, [resize], antialias=True), [size, size])


def pil_to_uint8(img) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F
    return F.pil_to_tensor(img)


def decode_pil(path: Path):
    from PIL import Image
    with Image.open(path) as im:
        return im.convert("RGB")


class _ImageItems(torch.utils.data.Dataset):
    """Map-style dataset over (list position, augmentation seed or -1) keys; ``raw`` returns the file bytes."""

    def __init__(self, root: Path, files: list[str], labels: torch.Tensor, size: int, resize: int,
                 raw: bool = False) -> None:
        self.root, self.files, self.labels = root, files, labels
        self.size, self.resize, self.raw = size, resize, raw

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]):
        i, seed = key
        path = self.root / self.files[i]
        y = int(self.labels[i])
        if self.raw:
            from torchvision.io import read_file
            return read_file(str(path)), y, seed
        try:
            img = decode_pil(path)
        except Exception as e:  # noqa: BLE001 - any decoder failure is the same user problem
            raise LtbenchError(f"cannot decode {path} ({type(e).__name__}: {e}); run `bench.py data check` to list "
                               "every missing or corrupt file") from None
        img = train_view(img, self.size, seed) if seed >= 0 else eval_view(img, self.size, self.resize)
        return pil_to_uint8(img), y


def _collate_raw(items):
    return [it[0] for it in items], torch.tensor([it[1] for it in items]), [it[2] for it in items]


def decode_batch_tensor(datas: list[torch.Tensor], seeds: list[int], size: int, resize: int,
                        device: torch.device) -> torch.Tensor:
    """Decode JPEG bytes on ``device`` (nvJPEG on CUDA) in one call, then crop/flip or resize/crop each image there.

    Files nvJPEG cannot take (PNG, CMYK, ...) fall back to the CPU decoder one by one.
    """
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg
    try:
        imgs = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        imgs = []
        for d in datas:
            try:
                imgs.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                imgs.append(decode_image(d, mode=ImageReadMode.RGB).to(device))
    out = [train_view(im, size, s) if s >= 0 else eval_view(im, size, resize) for im, s in zip(imgs, seeds)]
    return torch.stack(out)


def gpu_decode_available() -> bool:
    return torch.cuda.is_available()


@dataclass
class FileListLTData(LabelsFromTensors):
    """LTData over image files. Under DDP each rank serves its part of every global batch (training) or of the
    test set (evaluation); ``eval_indices`` says which examples, for the evaluator's ordered gather."""

    name: str
    num_classes: int
    root: Path
    train_files: list[str]
    train_y: torch.Tensor
    test_files: list[str]
    test_y: torch.Tensor
    image_size: int = 224
    resize: int = 256
    workers: int = 0
    decode: str = "auto"
    mean: torch.Tensor = field(default_factory=lambda: torch.tensor(IMAGENET_MEAN))
    std: torch.Tensor = field(default_factory=lambda: torch.tensor(IMAGENET_STD))
    imbalance: int | None = None
    class_names: list[str] | None = None

    def subset_train(self, idx: np.ndarray, name_suffix: str = "") -> "FileListLTData":
        """A copy whose train set is ``train[idx]`` (held-out splits)."""
        return replace(self, name=self.name + name_suffix, train_files=[self.train_files[int(i)] for i in idx],
                       train_y=self.train_y[torch.as_tensor(idx, dtype=torch.long)])

    def fingerprint(self) -> str:
        """sha256 (16 hex digits) over the (path, label) train list, computed once per object.

        The pixels are not hashed (hundreds of GB); the list is what changes when a split or a label is wrong.
        """
        fp = self.__dict__.get("_fingerprint")
        if fp is None:
            fp = fingerprint_parts(f"file-list-lt/{self.num_classes}/{len(self.train_files)}",
                                   "\n".join(self.train_files),
                                   self.train_y.cpu().to(torch.int64).contiguous().numpy())
            self.__dict__["_fingerprint"] = fp
        return fp

    def _use_gpu_decode(self, device: torch.device) -> bool:
        if self.decode == "gpu":
            if device.type != "cuda":
                raise LtbenchError("decode = 'gpu' needs a CUDA device; use decode = 'auto' or 'cpu'")
            return True
        return self.decode == "auto" and device.type == "cuda" and gpu_decode_available()

    def _batches(self, files: list[str], labels: torch.Tensor, keys: list[list[tuple[int, int]]],
                 device: torch.device) -> Iterator[Batch]:
        """Load the given batches of (index, seed) keys in a worker pool and normalise them on ``device``."""
        gpu = self._use_gpu_decode(device)
        # import once here: forked workers inherit it (~2 s each otherwise)
        import torchvision.transforms.v2.functional  # noqa: F401
        ds = _ImageItems(self.root, files, labels, self.image_size, self.resize, raw=gpu)
        loader = torch.utils.data.DataLoader(
            ds, batch_sampler=keys, num_workers=self.workers, pin_memory=device.type == "cuda",
            collate_fn=_collate_raw if gpu else None, prefetch_factor=4 if self.workers else None,
            persistent_workers=False)
        mean, std = self.mean.to(device), self.std.to(device)
        for batch in loader:
            if gpu:
                datas, y, seeds = batch
                x = decode_batch_tensor(datas, seeds, self.image_size, self.resize, device)
            else:
                x, y = batch
                x = x.to(device, non_blocking=True)
            yield normalize(x, mean, std), y.to(device, non_blocking=True)

    def train_batches(self, batch_size: int, generator: torch.Generator, device: torch.device,
                      augment: bool = True, balanced: bool = False, shard: str = "split") -> Iterator[Batch]:
        """One epoch of global batches of ``batch_size`` drawn from ``generator`` (instance or class-balanced).

        Under DDP, ``shard="split"`` gives each rank positions rank, rank+W, ... of every global batch (DDP
        training: the ranks' gradients average to the global batch's); ``shard="batches"`` gives each rank whole
        global batches round-robin (BN recomputation that equals the single-process one). The last global batch
        is padded from the start of the epoch's order when it has fewer images than ranks, so no rank is idle.
        """
        from ..distributed import rank_world
        rank, world = rank_world()
        n = len(self.train_y)
        idx = class_balanced_indices(self.train_y, n, generator) if balanced else instance_indices(n, generator)
        base = int(torch.randint(0, 2 ** 62, (1,), generator=generator)) if augment else -1
        keys = [(int(i), base + p if augment else -1) for p, i in enumerate(idx.tolist())]
        chunks = [keys[s:s + batch_size] for s in range(0, n, batch_size)]
        if world > 1:
            if shard == "batches":
                chunks = chunks[rank::world]
            elif shard == "split":
                if len(chunks[-1]) < world:
                    chunks[-1] = chunks[-1] + keys[:world - len(chunks[-1])]
                chunks = [c[rank::world] for c in chunks]
            else:
                raise ValueError(f"shard must be 'split' or 'batches', got {shard!r}")
        yield from self._batches(self.train_files, self.train_y, chunks, device)

    def eval_indices(self, split: str = "test") -> torch.Tensor:
        """Dataset positions this rank evaluates with ``sharded=True``, in the order ``eval_batches`` yields them."""
        from ..distributed import rank_world, shard
        rank, world = rank_world()
        n = len(self.test_y if split == "test" else self.train_y)
        return shard(torch.arange(n), rank, world)

    def eval_batches(self, split: str, batch_size: int, device: torch.device,
                     sharded: bool = False) -> Iterator[Batch]:
        """Un-augmented batches (resize + centre crop) of ``split`` ("test" or "train"), in dataset order.

        ``sharded=True`` (the evaluator under DDP) serves only this rank's ``eval_indices``; the caller gathers.
        The default serves everything on every rank, so callers that do not gather stay correct.
        """
        files, y = (self.test_files, self.test_y) if split == "test" else (self.train_files, self.train_y)
        idx = self.eval_indices(split).tolist() if sharded else list(range(len(y)))
        keys = [(i, -1) for i in idx]
        chunks = [keys[s:s + batch_size] for s in range(0, len(keys), batch_size)]
        yield from self._batches(files, y, chunks, device)


IMAGENET_LT_HELP = (
    "ImageNet-LT's lists come from Liu et al. (OLTR) / facebookresearch/classifier-balancing (data/ImageNet_LT/); "
    "the images are ILSVRC-2012's train and val sets, laid out as train/<wnid>/*.JPEG and val/<wnid>/*.JPEG.")
INAT_HELP = (
    "iNaturalist-2018's lists come from facebookresearch/classifier-balancing (data/iNaturalist18/); the images are "
    "the iNat-2018 competition's train_val2018/ folder (github.com/visipedia/inat_comp/tree/master/2018).")

IMAGENET_LT = register_dataset("imagenet-lt")(FileListSpec(
    name="imagenet-lt", num_classes=1000,
    splits=(("train", ListFile("ImageNet_LT_train.txt", 115_846, 4_658_674,
                               "efdbdad4f050237c310b2f354cf95a8b1d7c8d57a63c4ea4bb6bf2bcb012f37f")),
            ("val", ListFile("ImageNet_LT_val.txt", 20_000, None,
                             "9af7ba688acf9532ff5845a8fb14a1e97fdc4c51ac48bc72c08ea9c3f7ff142e")),
            ("test", ListFile("ImageNet_LT_test.txt", 50_000, None,
                              "d1590191cf8a71fada7b1aaedaa2d139a2aea93ff2f1b755319d0bd8dbaa55d5"))),
    test_split="test", how_to_get=IMAGENET_LT_HELP, preset="imagenet-lt"))

INAT2018 = register_dataset("inat2018")(FileListSpec(
    name="inat2018", num_classes=8142,
    splits=(("train", ListFile("iNaturalist18_train.txt", 437_513, 29_804_998,
                               "158fa2dca040e6e95b06c68c7cdff40fe696f202793b2aa0e8b854321ffe1adf")),
            ("val", ListFile("iNaturalist18_val.txt", 24_426, None,
                             "efaeff65f80641b60864470e6f255aa69453406ef5717eec8c6681748f3a61f3"))),
    test_split="val", how_to_get=INAT_HELP, preset="inat2018",
    mean=(0.466, 0.471, 0.380), std=(0.195, 0.194, 0.192)))
