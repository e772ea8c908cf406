"""Batched vs one-at-a-time stage-1 training throughput for M = 1, 3, 6, 12 networks (issue 16).

* ours ("batched"): M ResNet-32s trained as one stacked network (``ltbench.train.batched.stacked_steps``: grouped
  convolutions, per-network BN channels, per-network generators and SGD state);
* reference ("one at a time"): the same M networks trained in turn, each with ``stage1``'s per-network pipeline
  (``TensorLTData.train_batches``, channels_last, the resolved precision, ``torch.optim.SGD``).

Both sides train the same number of images per round (M x steps x 128); the ratio is the batched speed-up.
Rounds are interleaved (batched, one-at-a-time, ...) as in ``test_throughput.py``. On CPU a round has
``max(1, steps // M)`` steps per network so the whole file runs in a few minutes; on CUDA ``steps`` each.
``LTBENCH_BENCH_CUDA_GRAPHS=1`` runs both sides with CUDA graphs (``Stage1Config.cuda_graphs``).
"""
from __future__ import annotations

import os

import pytest
import torch

from common import bench_device, steps
from conftest import META
from ltbench.models import create_network
from ltbench.train.accel import accelerate
from ltbench.train.batched import stacked_steps
from ltbench.train.loop import autocast_for, cross_entropy_step
from test_throughput import BATCH, _paired, _sgd

GRAPHS = os.environ.get("LTBENCH_BENCH_CUDA_GRAPHS", "0") == "1"


def _precision(dev: torch.device) -> str:
    try:
        from ltbench.train.loop import resolve_precision
        return resolve_precision("auto", dev)
    except ImportError:  # before the precision option: bf16 on CUDA only
        return "bf16" if dev.type == "cuda" else "fp32"


def _one_at_a_time(data, dev, m: int, k: int, precision: str):
    runs = []
    for seed in range(m):
        torch.manual_seed(seed)
        net = create_network("resnet32", data.num_classes).to(dev).to(memory_format=torch.channels_last).train()
        opt = _sgd(net.parameters())
        model = accelerate(net, dev, False, GRAPHS and dev.type == "cuda", print)
        step = cross_entropy_step(model, dev, channels_last=True)
        gen = torch.Generator().manual_seed(seed)

        def batches(gen=gen):
            while True:
                yield from data.train_batches(BATCH, gen, dev)
        runs.append((opt, step, batches()))

    def fn():
        for opt, step, it in runs:
            for _ in range(k):
                with autocast_for(dev, precision):
                    loss, _, _ = step(next(it))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return fn


@pytest.mark.parametrize("m", [1, 3, 6, 12], ids=lambda m: f"{m}nets")
def test_stage1_batched(benchmark, bench_data, m):
    dev = bench_device()
    k = steps() if dev.type == "cuda" else max(1, steps() // m)
    precision = _precision(dev)
    META.update(batched_precision=precision, batched_cuda_graphs=GRAPHS and dev.type == "cuda",
                **{f"batched_steps_per_round_m{m}": k})
    run = stacked_steps(bench_data, dev, m, BATCH, True, precision, cuda_graphs=GRAPHS and dev.type == "cuda",
                        echo=print)
    fns = {"ours": lambda: run(k), "reference": _one_at_a_time(bench_data, dev, m, k, precision)}
    _paired(benchmark, fns, dev, f"stage1_batched_m{m}", m * k * BATCH, "img/s")
