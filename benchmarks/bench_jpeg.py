"""JPEG input pipeline + ResNet-50 training step, images/s: ltbench's FileListLTData against torchvision's
ImageFolder + DataLoader (same transforms) in the same run. Generated ~500x375 JPEGs. Results -> JSON in the
git-ignored outputs/benchmarks/jpeg-<device>-<date>.json (LTBENCH_BENCH_OUT names another file; ``--bench-record``
writes the committed benchmarks/results/ instead).

    python -m pytest benchmarks/bench_jpeg.py --benchmark-json /tmp/bench.json -p no:cacheprovider
Set LTBENCH_BENCH_N (images, default 48) and LTBENCH_BENCH_WORKERS (default 2). On CUDA ours decodes with nvJPEG.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from jpeg_fixture import make_tree  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import result_path  # noqa: E402

N = int(os.environ.get("LTBENCH_BENCH_N", 48))
WORKERS = int(os.environ.get("LTBENCH_BENCH_WORKERS", 2))
BATCH = 16
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
RESULTS: dict = {"device": torch.cuda.get_device_name(0) if DEVICE.type == "cuda" else "cpu", "images": N}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench-jpeg")
    per = N // 4
    make_tree(root, train_counts=(per,) * 4, test_per_class=(1,) * 4, size=(500, 375))
    return root


def _ours(tree):
    from ltbench.registry import get_dataset
    return get_dataset("imagenet-lt").load(tree, image_size=224, workers=WORKERS, decode="auto")


def _reference_loader(tree):
    from torchvision import datasets, transforms as T
    tf = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    ds = datasets.ImageFolder(str(tree / "train"), transform=tf)
    return torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=WORKERS,
                                       pin_memory=DEVICE.type == "cuda")


@pytest.fixture(scope="module")
def record(pytestconfig) -> bool:
    """``--bench-record`` (benchmarks/conftest.py): write the committed benchmarks/results/ instead of outputs/."""
    return bool(pytestconfig.getoption("--bench-record", default=False))


def _record(name: str, benchmark, n_images: int, record: bool) -> None:
    RESULTS[name] = n_images / benchmark.stats.stats.min  # best round: warm imports and caches
    out = result_path(f"jpeg-{RESULTS['device'].replace(' ', '_')}-{_dt.date.today().isoformat()}.json", record)
    if "ours_pipeline" in RESULTS and "reference_pipeline" in RESULTS:
        RESULTS["pipeline_ratio"] = RESULTS["ours_pipeline"] / RESULTS["reference_pipeline"]
    if "ours_train_step" in RESULTS and "reference_train_step" in RESULTS:
        RESULTS["train_step_ratio"] = RESULTS["ours_train_step"] / RESULTS["reference_train_step"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(RESULTS, indent=2) + "\n")


def test_pipeline_ours(benchmark, tree, record):
    data = _ours(tree)
    run = lambda: sum(len(y) for _, y in data.train_batches(BATCH, torch.Generator().manual_seed(0), DEVICE))  # noqa
    n = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    _record("ours_pipeline", benchmark, n, record)


def test_pipeline_reference(benchmark, tree, record):
    loader = _reference_loader(tree)
    run = lambda: sum(len(y.to(DEVICE)) for x, y in ((x.to(DEVICE), y) for x, y in loader))  # noqa
    n = benchmark.pedantic(run, rounds=2, iterations=1, warmup_rounds=1)
    _record("reference_pipeline", benchmark, n, record)


def _train_epoch(batches, max_steps: int) -> int:
    from ltbench.models import create_network
    torch.manual_seed(0)
    net = create_network("resnet50", 4).to(DEVICE).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    seen = 0
    for i, (x, y) in enumerate(batches):
        if i >= max_steps:
            break
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=DEVICE.type == "cuda"):
            loss = torch.nn.functional.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)).float(),
                                                     y.to(DEVICE))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return seen


STEPS = int(os.environ.get("LTBENCH_BENCH_STEPS", 1 if DEVICE.type == "cpu" else 20))


def test_train_step_ours(benchmark, tree, record):
    data = _ours(tree)
    n = benchmark.pedantic(lambda: _train_epoch(data.train_batches(BATCH, torch.Generator().manual_seed(0), DEVICE),
                                                STEPS), rounds=1, iterations=1)
    _record("ours_train_step", benchmark, n, record)


def test_train_step_reference(benchmark, tree, record):
    loader = _reference_loader(tree)
    n = benchmark.pedantic(lambda: _train_epoch(((x.to(DEVICE), y) for x, y in loader), STEPS),
                           rounds=1, iterations=1)
    _record("reference_train_step", benchmark, n, record)
