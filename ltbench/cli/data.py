"""``bench.py data stats`` / ``bench.py data check``: split sizes and shot groups from the lists, and a file audit."""
from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from ..errors import LtbenchError


def _file_list_spec(name: str):
    from ..data.file_lists import FileListSpec
    from ..registry import dataset_names, get_dataset
    spec = get_dataset(name)
    if not isinstance(spec, FileListSpec):
        lists = [d for d in dataset_names() if isinstance(get_dataset(d), FileListSpec)]
        raise LtbenchError(f"{name} is not a split-list dataset; `data` commands take: {', '.join(lists)}")
    return spec


def split_stats(spec, data_root: str | None, train_list: str | None) -> dict:
    """Per split: list path, images, classes present, sha256 match; shot groups from the train list when found."""
    import numpy as np

    from ..data.file_lists import read_list, sha256_of_list, shot_counts
    out: dict = {"dataset": spec.name, "num_classes": spec.num_classes, "test_split": spec.test_split, "splits": {}}
    for split, lf in spec.splits:
        try:
            path = spec.find_list(split, data_root, train_list if split == "train" else None)
        except LtbenchError as e:
            out["splits"][split] = {"missing": str(e)}
            continue
        _, labels = read_list(path)
        counts = np.bincount(labels, minlength=spec.num_classes)
        digest = sha256_of_list(path)
        row = {"list": str(path), "images": int(len(labels)), "classes_present": int((counts > 0).sum()),
               "max_per_class": int(counts.max()), "min_per_class": int(counts[counts > 0].min()),
               "sha256_matches_published": (digest == lf.sha256) if lf.sha256 else None}
        if split == "train":
            row["shots"] = shot_counts(counts)
        out["splits"][split] = row
    return out


def _check_one(path: Path) -> str | None:
    """None if ``path`` exists and fully decodes, else the reason."""
    if not path.is_file():
        return "missing"
    try:
        from PIL import Image
        with Image.open(path) as im:
            im.load()
            if im.width < 1 or im.height < 1:
                return "empty image"
    except Exception as e:  # noqa: BLE001
        return f"corrupt ({type(e).__name__}: {str(e)[:120]})"
    return None


def check_files(root: Path, rel: list[str], sample: int | None, seed: int = 0, threads: int = 8
                ) -> tuple[int, list[tuple[str, str]]]:
    """(files checked, [(relative path, problem)]) over all listed files or a seeded random sample."""
    todo = list(rel)
    if sample is not None and sample < len(todo):
        todo = random.Random(seed).sample(todo, sample)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:  # Pillow releases the GIL while decoding
        results = list(ex.map(lambda r: _check_one(root / r), todo))
    return len(todo), [(r, why) for r, why in zip(todo, results) if why is not None]


@click.group(name="data")
def data_group() -> None:
    """Split-list datasets (imagenet-lt, inat2018): list statistics and a file audit."""


@data_group.command(name="stats")
@click.option("--dataset", required=True, help="imagenet-lt or inat2018")
@click.option("--data-root", type=click.Path(file_okay=False), default=None,
              help="folder whose split lists (e.g. ImageNet_LT_train.txt) take precedence over the shipped ones")
@click.option("--train-list", type=click.Path(dir_okay=False), default=None, help="explicit train list file")
def stats(dataset: str, data_root: str | None, train_list: str | None) -> None:
    """Images per split and many / medium / few class counts, from the lists alone (no images needed)."""
    spec = _file_list_spec(dataset)
    st = split_stats(spec, data_root, train_list)
    click.echo(f"{spec.name}: {spec.num_classes:,} classes; test set = {spec.test_split} list")
    for split, row in st["splits"].items():
        if "missing" in row:
            click.echo(f"  {split:<5} not available: {row['missing']}")
            continue
        match = {True: "sha256 matches the published list", False: "sha256 DIFFERS from the published list",
                 None: ""}[row["sha256_matches_published"]]
        click.echo(f"  {split:<5} {row['images']:>9,} images  {row['classes_present']:>5,} classes  "
                   f"per class {row['min_per_class']}..{row['max_per_class']}  {match}")
        click.echo(f"        list: {row['list']}")
        if "shots" in row:
            s = row["shots"]
            click.echo(f"        many (>100) / medium (20..100) / few (<20) classes: "
                       f"{s['many']} / {s['medium']} / {s['few']}")
    if "shots" not in st["splits"].get("train", {}):
        click.echo("  many / medium / few: need the train list (class counts come from training images)")


@data_group.command(name="check")
@click.option("--dataset", required=True, help="imagenet-lt or inat2018")
@click.option("--data-root", type=click.Path(file_okay=False), required=True, help="the image root")
@click.option("--split", "splits", multiple=True, help="split(s) to check (default: every available one)")
@click.option("--sample", type=int, default=None, help="check a random sample of N files per split")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=8, show_default=True)
@click.option("--train-list", type=click.Path(dir_okay=False), default=None, help="explicit train list file")
def check(dataset: str, data_root: str, splits: tuple[str, ...], sample: int | None, seed: int, threads: int,
          train_list: str | None) -> None:
    """Verify that listed files exist and decode; name every missing or corrupt one (exit 2 if any)."""
    spec = _file_list_spec(dataset)
    root = Path(data_root).expanduser().resolve()
    if not root.is_dir():
        raise LtbenchError(f"data root {root} does not exist")
    if sample is not None and sample < 1:
        raise LtbenchError("--sample must be at least 1")
    names = list(splits) or [s for s, _ in spec.splits]
    bad_all: list[tuple[str, str, str]] = []
    checked_any = False
    for split in names:
        try:
            _, rel, _ = spec.read_split(split, root, train_list if split == "train" else None)
        except LtbenchError as e:
            if splits:  # asked for explicitly: a missing list is an error
                raise
            click.echo(f"{split}: skipped ({str(e).split(';')[0]})")
            continue
        checked_any = True
        n, bad = check_files(root, rel, sample, seed, threads)
        click.echo(f"{split}: checked {n:,} of {len(rel):,} listed files: "
                   f"{sum(w == 'missing' for _, w in bad)} missing, {sum(w != 'missing' for _, w in bad)} corrupt")
        bad_all += [(split, r, w) for r, w in bad]
    if not checked_any:
        raise LtbenchError(f"no split list of {spec.name} could be found; nothing was checked")
    if bad_all:
        for split, r, why in bad_all[:200]:
            click.echo(f"  {split}: {root / r}: {why}", err=True)
        more = f" (first 200 shown)" if len(bad_all) > 200 else ""
        raise LtbenchError(f"{len(bad_all)} listed files are missing or corrupt under {root}{more}")
    click.echo("all checked files exist and decode")
