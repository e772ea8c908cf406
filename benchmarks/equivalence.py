"""Accuracy equivalence: a short stage-1 run with our pipeline vs the reference pipeline on the same data.

Both train the same ResNet-32 (same init per seed, SGD + Nesterov, cosine lr, batch 64) for a few epochs on the
same class-balanced subset of real CIFAR-10 (from the CIFAR-10-LT IF10 set) and are evaluated on the same test
images. Ours: ``TensorLTData.train_batches`` (tensor augmentation) + channels_last (+ bf16 on CUDA). Reference:
torchvision CIFAR + PIL transforms + DataLoader, fp32 NCHW. The claim checked: |mean_ours - mean_ref| is within the
seed noise (2 x the standard error of the difference of means). Writes a JSON under outputs/benchmarks/.

``--compare precision`` checks the stage-1 precision instead: our pipeline in fp32 against our pipeline under bf16
autocast (the ``precision = "auto"`` choice on CUDA and on CPUs with native bf16), same seeds, same data. On a CPU
without native bf16 the bf16 side is emulated by oneDNN: slower, but the same autocast numerics.

    python benchmarks/equivalence.py --per-class 100 --epochs 5 --seeds 0,1,2
    python benchmarks/equivalence.py --compare precision --per-class 200 --epochs 8 --seeds 0,1,2
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import SHARED_DATA, bench_device, result_path  # noqa: E402
from reference import InMemoryCIFAR, eval_loader, train_transform  # noqa: E402
from ltbench.models import create_network  # noqa: E402
from ltbench.registry import get_dataset  # noqa: E402
from ltbench.train.loop import autocast_for, cross_entropy_step, resolve_precision  # noqa: E402
from ltbench.train.schedules import warmup_cosine  # noqa: E402


def subset(per_class: int, n_test: int):
    full = get_dataset("cifar10-lt").load(SHARED_DATA, 10)
    y = full.train_y.numpy()
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(full.num_classes)])
    ty = full.test_y.numpy()
    tidx = np.concatenate([np.flatnonzero(ty == c)[:n_test // full.num_classes] for c in range(full.num_classes)])
    t = torch.as_tensor(tidx)
    return full.subset_train(idx).with_test(full.test_x[t], full.test_y[t])


def accuracy(net, batches, dev, channels_last: bool) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in batches:
            x, y = x.to(dev), y.to(dev)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            correct += int((net(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / total


def train(data, seed: int, epochs: int, side: str, dev: torch.device, precision: str = "fp32", bs: int = 64,
          lr: float = 0.05) -> float:
    """Test accuracy after ``epochs``; ``side`` is ``ours`` (under ``precision``) or ``reference`` (always fp32)."""
    torch.manual_seed(seed)
    net = create_network("resnet32", data.num_classes).to(dev)
    cl = side == "ours"
    if cl:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    n = len(data.train_labels)
    steps = math.ceil(n / bs)
    if side == "ours":
        gen = torch.Generator().manual_seed(seed)
        step = cross_entropy_step(net, dev, channels_last=True)
        epoch_batches = lambda: data.train_batches(bs, gen, dev)  # noqa: E731
    else:
        ds = InMemoryCIFAR(data.train_x, data.train_y, train_transform(data.mean, data.std))
        loader = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, num_workers=0,
                                             generator=torch.Generator().manual_seed(seed))
        step = cross_entropy_step(net, dev, channels_last=False)
        epoch_batches = lambda: ((x.to(dev), y.to(dev)) for x, y in loader)  # noqa: E731
    for e in range(epochs):
        net.train()
        for i, b in enumerate(epoch_batches()):
            for g in opt.param_groups:
                g["lr"] = warmup_cosine(e + i / steps, lr, epochs, 1.0, 0.0)
            with autocast_for(dev, precision if side == "ours" else "fp32"):
                loss, _, _ = step(b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if side == "ours":
        return accuracy(net, data.eval_batches("test", 256, dev), dev, True)
    return accuracy(net, eval_loader(data, 256), dev, False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--compare", choices=("reference", "precision"), default="reference",
                    help="reference: ours (precision auto) vs the reference pipeline; precision: ours fp32 vs bf16")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = bench_device()
    data = subset(a.per_class, a.test)
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.compare == "precision":  # (label, side, precision); the first is compared against the second
        arms = [("bf16", "ours", "bf16"), ("fp32", "ours", "fp32")]
    else:
        arms = [("ours", "ours", resolve_precision("auto", dev)), ("reference", "reference", "fp32")]
    res: dict[str, list[float]] = {label: [] for label, _, _ in arms}
    secs: dict[str, float] = {label: 0.0 for label, _, _ in arms}
    t0 = time.perf_counter()
    for seed in seeds:
        for label, side, precision in arms:
            t = time.perf_counter()
            acc = train(data, seed, a.epochs, side, dev, precision)
            secs[label] += time.perf_counter() - t
            res[label].append(acc)
            print(f"seed {seed} {label:<9} test acc {acc:.2f}%  ({time.perf_counter() - t0:.0f}s)", flush=True)
    (x, _, _), (y, _, _) = arms
    m = {k: float(np.mean(v)) for k, v in res.items()}
    sd = {k: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for k, v in res.items()}
    se_diff = math.sqrt(sd[x] ** 2 / len(seeds) + sd[y] ** 2 / len(seeds))
    diff = m[x] - m[y]
    paired = [p - q for p, q in zip(res[x], res[y])]
    from ltbench.runner import cpu_model
    from ltbench.train.loop import cpu_has_native_bf16
    out = {"date": dt.datetime.now().isoformat(timespec="seconds"), "device": str(dev), "compare": a.compare,
           "arms": {label: {"side": side, "precision": precision} for label, side, precision in arms},
           "cpu_model": cpu_model(), "cpu_native_bf16": cpu_has_native_bf16(), "torch": torch.__version__,
           "threads": torch.get_num_threads(),
           "train_images": len(data.train_labels), "test_images": len(data.test_labels), "epochs": a.epochs,
           "seeds": seeds, "acc": res, "mean": m, "seed_std": sd, "diff": diff, "se_diff": se_diff,
           "paired_diffs": paired, "within_seed_noise": bool(abs(diff) <= 2 * se_diff),
           "train_seconds": secs, "seconds": time.perf_counter() - t0}
    print(json.dumps(out, indent=2))
    path = Path(a.out) if a.out else result_path(f"equivalence-{a.compare}-{dev.type}-{dt.date.today()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
