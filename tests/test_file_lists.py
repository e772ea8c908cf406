"""Split lists, the imagenet-lt / inat2018 specs, the JPEG pipeline and `data stats` / `data check`."""
from __future__ import annotations

import gzip
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import SHARED_DATA
from jpeg_fixture import TEST_PER_CLASS, TRAIN_COUNTS, make_tree
from ltbench.cli.data import data_group
from ltbench.data.file_lists import (decode_batch_tensor, eval_view, read_list, rrc_params, train_view)
from ltbench.errors import LtbenchError
from ltbench.registry import get_dataset

SAMPLE = SHARED_DATA / "imagenet-lt-sample"  # honours $LTBENCH_SHARED, like the other real-data tests


@pytest.fixture
def cli() -> click.Group:
    @click.group()
    def g() -> None: ...
    g.add_command(data_group)
    return g


@pytest.fixture
def tree(tmp_path) -> Path:
    make_tree(tmp_path)
    return tmp_path


def test_read_list_plain_gz_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text("train/x y/1.JPEG 3\n\ntrain/b.JPEG 0\n")
    with gzip.open(tmp_path / "a.txt.gz", "wt") as f:
        f.write("train/x y/1.JPEG 3\ntrain/b.JPEG 0\n")
    for name in ("a.txt", "a.txt.gz"):
        paths, y = read_list(tmp_path / name)
        assert paths == ["train/x y/1.JPEG", "train/b.JPEG"] and y.tolist() == [3, 0]
    (tmp_path / "bad.txt").write_text("ok.JPEG 1\nbroken.JPEG one\n")
    with pytest.raises(LtbenchError, match=r"bad.txt:2: label 'one'"):
        read_list(tmp_path / "bad.txt")


def test_shipped_lists_sizes():
    spec = get_dataset("imagenet-lt")
    for split, n, per in (("val", 20_000, 20), ("test", 50_000, 50)):
        _, paths, y = spec.read_split(split)
        assert len(paths) == n and set(np.bincount(y, minlength=1000).tolist()) == {per}
    _, paths, y = get_dataset("inat2018").read_split("val")
    assert len(paths) == 24_426 and len(np.unique(y)) == 8142


def test_missing_train_list_names_file_hash_and_remedy(tmp_path):
    with pytest.raises(LtbenchError) as e:
        get_dataset("imagenet-lt").load(tmp_path)
    msg = str(e.value)
    assert "ImageNet_LT_train.txt" in msg and "efdbdad4f050" in msg and "4,658,674 bytes" in msg
    assert "--train-list" in msg


def test_load_fixture_counts_labels_and_sampled_missing_files(tree):
    data = get_dataset("imagenet-lt").load(tree, image_size=32, workers=0)
    assert data.class_counts()[:4].tolist() == list(TRAIN_COUNTS) and data.class_counts()[4:].sum() == 0
    assert len(data.test_labels) == sum(TEST_PER_CLASS)
    # out-of-range label
    lines = (tree / "ImageNet_LT_train.txt").read_text().splitlines()
    (tree / "bad.txt").write_text("\n".join(lines + ["train/n00000000/n00000000_0.JPEG 1000"]) + "\n")
    with pytest.raises(LtbenchError, match=r"outside \[0, 999\]"):
        get_dataset("imagenet-lt").load(tree, train_list=str(tree / "bad.txt"))
    # a missing file among the sampled ones: named in one message
    (tree / "val/n00000003/n00000003_3.JPEG").unlink()  # the last test line: always sampled
    with pytest.raises(LtbenchError, match="val/n00000003/n00000003_3.JPEG"):
        get_dataset("imagenet-lt").load(tree)
    with pytest.raises(LtbenchError, match="does not exist"):
        get_dataset("imagenet-lt").load(tree / "nope")


def test_batches_shapes_normalisation_determinism(tree):
    data = get_dataset("imagenet-lt").load(tree, image_size=32, workers=0)
    cpu = torch.device("cpu")
    b1 = list(data.train_batches(8, torch.Generator().manual_seed(1), cpu))
    b2 = list(data.train_batches(8, torch.Generator().manual_seed(1), cpu))
    assert [x.shape for x, _ in b1] == [(8, 3, 32, 32)] * 3 + [(1, 3, 32, 32)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(b1, b2))
    assert sorted(torch.cat([y for _, y in b1]).tolist()) == sorted(data.train_labels.tolist())
    ev = torch.cat([x for x, _ in data.eval_batches("test", 5, cpu)])
    assert ev.shape == (13, 3, 32, 32) and -3 < float(ev.mean()) < 3


def test_rrc_params_within_bounds_and_tensor_path_matches_pil(tree):
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = rrc_params(375, 500, g)
        assert 0 <= top and 0 <= left and top + h <= 375 and left + w <= 500
        assert 0.08 * 375 * 500 * 0.99 <= h * w <= 375 * 500
    from PIL import Image
    from torchvision.io import read_file
    from torchvision.transforms.v2.functional import pil_to_tensor
    rel = "train/n00000000/n00000000_0.JPEG"
    pil = Image.open(tree / rel).convert("RGB")
    for seed in (3, -1):
        ref = pil_to_tensor(train_view(pil, 32, seed) if seed >= 0 else eval_view(pil, 32, 37)).float()
        got = decode_batch_tensor([read_file(str(tree / rel))], [seed], 32, 37, torch.device("cpu"))[0].float()
        assert got.shape == ref.shape == (3, 32, 32)
        assert float((got - ref).abs().mean()) < 6.0  # same crop; PIL vs tensor resampling and IDCT differ slightly


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_decode_matches_cpu(tree):
    data = get_dataset("imagenet-lt").load(tree, image_size=32, workers=0, decode="gpu")
    cpu_data = get_dataset("imagenet-lt").load(tree, image_size=32, workers=0, decode="cpu")
    g = torch.cat([x.cpu() for x, _ in data.eval_batches("test", 5, torch.device("cuda"))])
    c = torch.cat([x for x, _ in cpu_data.eval_batches("test", 5, torch.device("cpu"))])
    assert float((g - c).abs().mean()) < 0.1


def test_data_stats_and_check_cli(tree, cli):
    r = CliRunner().invoke(cli, ["data", "stats", "--dataset", "imagenet-lt", "--data-root", str(tree)])
    assert r.exit_code == 0, r.output
    assert "25 images" in r.output and "13 images" in r.output and "50,000 images" not in r.output.split("test")[0]
    assert "0 / 0 / 1000" in r.output  # every class has < 20 training images in the fixture
    r = CliRunner().invoke(cli, ["data", "check", "--dataset", "imagenet-lt", "--data-root", str(tree),
                                 "--split", "train", "--split", "test"])
    assert r.exit_code == 0 and "all checked files exist and decode" in r.output
    (tree / "train/n00000001/n00000001_2.JPEG").unlink()
    (tree / "val/n00000000/n00000000_1.JPEG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    r = CliRunner().invoke(cli, ["data", "check", "--dataset", "imagenet-lt", "--data-root", str(tree),
                                 "--split", "train", "--split", "test"])
    assert r.exit_code != 0 and isinstance(r.exception, LtbenchError) and "2 listed files" in str(r.exception)
    assert "n00000001_2.JPEG: missing" in r.output and "n00000000_1.JPEG: corrupt" in r.output


def test_stats_on_shipped_lists(cli):
    r = CliRunner().invoke(cli, ["data", "stats", "--dataset", "inat2018"])
    assert r.exit_code == 0 and "24,426 images" in r.output and "8,142 classes" in r.output
    assert "sha256 matches the published list" in r.output and "iNaturalist18_train.txt" in r.output


@pytest.mark.skipif(not (SAMPLE / "ImageNet_LT_val_sample.txt").is_file(), reason="shared sample not present")
def test_real_imagenet_lt_sample(cli):
    """277 real JPEGs: val sample as the train list, test sample as the test list."""
    data = get_dataset("imagenet-lt").load(SAMPLE, image_size=32, workers=0,
                                           train_list=str(SAMPLE / "ImageNet_LT_val_sample.txt"),
                                           test_list=str(SAMPLE / "ImageNet_LT_test_sample.txt"))
    assert len(data.train_labels) == 143 and len(data.test_labels) == 134
    x, y = next(iter(data.eval_batches("test", 16, torch.device("cpu"))))
    assert x.shape == (16, 3, 32, 32)
    r = CliRunner().invoke(cli, ["data", "check", "--dataset", "imagenet-lt", "--data-root", str(SAMPLE),
                                 "--train-list", str(SAMPLE / "ImageNet_LT_val_sample.txt"), "--split", "train"])
    assert r.exit_code == 0 and "checked 143 of 143" in r.output
