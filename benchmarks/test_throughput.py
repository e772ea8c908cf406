"""Side-by-side throughput: our pipeline vs the reference-style pipeline, measured in the same run.

* stage-1 training images/s: ``TensorLTData.train_batches`` (tensor augmentation on the device) + channels_last
  + the stage-1 precision ``auto`` resolves to (bf16 autocast on CUDA and on CPUs with native bf16, fp32
  elsewhere: what ``bench.py run`` trains with), + compile with LTBENCH_BENCH_COMPILE=1, vs torchvision CIFAR + PIL
  transforms + DataLoader, fp32 NCHW eager;
* evaluation images/s: ``eval_batches`` vs a DataLoader over the test set with ToTensor + Normalize, both fp32 (the
  evaluator never autocasts);
* stage-2 step: a classifier step on cached features vs the classifier-balancing way (a frozen backbone forward
  on augmented images from the DataLoader, then the classifier step).

Each side runs whole rounds of ``steps()`` steps after a warm-up round; medians go into the ratio table.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from common import bench_device, rounds, steps, use_compile
from conftest import META, RESULTS, record
from ltbench.models import create_network
from ltbench.train.head import index_batches
from ltbench.train.loop import autocast_for, cross_entropy_step, resolve_precision
from reference import forever, reference_step, eval_loader, train_loader, workers

BATCH, EVAL_BATCH = 128, 256


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _sgd(params) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def _net(data, dev, channels_last: bool):
    torch.manual_seed(0)
    net = create_network("resnet32", data.num_classes).to(dev)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _paired(benchmark, fns: dict, dev, metric: str, items: int, unit: str) -> None:
    """Interleave the two sides: each pytest-benchmark round runs ours then the reference, timing each, so slow
    drift of a shared machine hits both sides alike; the ratio is the median of the per-round ratios."""
    times: dict[str, list[float]] = {"ours": [], "reference": []}

    def round_():
        for side in ("ours", "reference"):
            _sync(dev)
            t0 = time.perf_counter()
            fns[side]()
            _sync(dev)
            times[side].append(time.perf_counter() - t0)
    for side in fns:  # warm-up (compile, allocator, DataLoader start), not timed
        fns[side]()
    _sync(dev)
    benchmark.pedantic(round_, rounds=rounds(), iterations=1, warmup_rounds=0)
    ratios = [r / o for o, r in zip(times["ours"], times["reference"])]
    for side in ("ours", "reference"):
        record(metric, side, statistics.median(times[side]), items, unit, round_s=times[side])
    RESULTS[metric]["paired_ratio_median"] = statistics.median(ratios)
    RESULTS[metric]["paired_ratios"] = ratios
    benchmark.extra_info.update({f"{s}_round_s": t for s, t in times.items()})
    benchmark.extra_info["paired_ratio_median"] = statistics.median(ratios)


def _precision(dev: torch.device) -> str:
    """Our side's precision: what ``precision = "auto"`` resolves to on this device, as a real run would train."""
    return resolve_precision("auto", dev)


def _stage1_fn(bench_data, dev, k, side):
    if side == "ours":
        precision = _precision(dev)
        net = _net(bench_data, dev, channels_last=True)
        model = torch.compile(net) if use_compile() else net
        opt = _sgd(net.parameters())
        step = cross_entropy_step(model, dev, channels_last=True)
        gen = torch.Generator().manual_seed(0)

        def batches():
            while True:
                yield from bench_data.train_batches(BATCH, gen, dev)
        it = batches()

        def fn():
            for _ in range(k):
                with autocast_for(dev, precision):
                    loss, _, _ = step(next(it))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    else:
        net = _net(bench_data, dev, channels_last=False)
        opt = _sgd(net.parameters())
        it = forever(train_loader(bench_data, BATCH))

        def fn():
            for _ in range(k):
                x, y = next(it)
                reference_step(net, opt, x, y, dev)
    net.train()
    return fn


def test_stage1_train(benchmark, bench_data):
    dev, k = bench_device(), steps()
    precision = _precision(dev)
    META.update(steps_per_round=k, rounds=rounds(), reference_workers=workers(), compile=use_compile(),
                stage1_precision=precision, stage1_bf16_autocast=precision == "bf16", eval_precision="fp32")
    fns = {side: _stage1_fn(bench_data, dev, k, side) for side in ("ours", "reference")}
    _paired(benchmark, fns, dev, "stage1_train", k * BATCH, "img/s")


def _eval_fn(bench_data, dev, k, side):
    net = _net(bench_data, dev, channels_last=side == "ours").eval()
    if side == "ours":
        def batches():
            while True:
                yield from bench_data.eval_batches("test", EVAL_BATCH, dev)
        it = batches()

        @torch.no_grad()
        def fn():
            for _ in range(k):
                x, _ = next(it)
                net(x.contiguous(memory_format=torch.channels_last))
    else:
        it = forever(eval_loader(bench_data, EVAL_BATCH))

        @torch.no_grad()
        def fn():
            for _ in range(k):
                x, _ = next(it)
                net(x.to(dev, non_blocking=True))
    return fn


def test_eval(benchmark, bench_data):
    dev, k = bench_device(), steps()
    fns = {side: _eval_fn(bench_data, dev, k, side) for side in ("ours", "reference")}
    _paired(benchmark, fns, dev, "eval", k * EVAL_BATCH, "img/s")


def _stage2_fn(bench_data, dev, k, side):
    """cRT-style classifier step: cached features (ours) vs frozen backbone on augmented images (reference)."""
    net = _net(bench_data, dev, channels_last=side == "ours").eval()
    head = torch.nn.Linear(net.num_features, bench_data.num_classes).to(dev)
    opt = _sgd(head.parameters())
    gen = torch.Generator().manual_seed(0)
    if side == "ours":
        with torch.no_grad():  # the cached features (computed once per stage-1 artifact; not timed here)
            feats = torch.cat([net.extractor(x.contiguous(memory_format=torch.channels_last)).float()
                               for x, _ in bench_data.eval_batches("train", EVAL_BATCH, dev)])
        labels = bench_data.train_y.to(dev)

        def batches():
            while True:
                yield from index_batches(labels, BATCH, gen, balanced=True)
        it = batches()

        def fn():
            for _ in range(k):
                (idx,) = next(it)
                loss = F.cross_entropy(head(feats[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    else:
        it = forever(train_loader(bench_data, BATCH))

        def fn():
            for _ in range(k):
                x, y = next(it)
                x, y = x.to(dev), y.to(dev)
                with torch.no_grad():
                    z = net.extractor(x)
                loss = F.cross_entropy(head(z), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return fn


def test_stage2_step(benchmark, bench_data):
    dev, k = bench_device(), steps()
    fns = {side: _stage2_fn(bench_data, dev, k, side) for side in ("ours", "reference")}
    # rate unit: steps/s (the ratio is the step-time speed-up)
    _paired(benchmark, fns, dev, "stage2_step", k, "steps/s")
