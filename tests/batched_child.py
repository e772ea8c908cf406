"""Train a small batched stage-1 group (tests/test_batched_resume.py); optionally SIGKILL itself at a write.

usage: python tests/batched_child.py [KILL_AT] [float64]   (LTBENCH_CACHE says where; KILL_AT: SIGKILL just
before the KILL_AT-th checkpoint write of the batched trainer, 0 = never; float64: networks and batches in float64,
where any stack equals the networks trained alone up to summation order, tests/test_batched.py)
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import ltbench.train.batched as batched  # noqa: E402
from ltbench.config import resolve  # noqa: E402
from ltbench.registry import get_dataset  # noqa: E402
from tiny_data import float64_pipeline, small  # noqa: E402

EPOCHS = 3


def group():
    """An SGD and an SWA network (seeds 0 and 1) on 48 tiny-set images (8x8 pixels), batches of 16, SWA over the
    last 2 epochs."""
    cfgs = [resolve("ce", "cifar10-lt-tiny", None, mode, seed, "cifar-tiny", epochs=EPOCHS, device="cpu")
            for mode, seed in (("sgd", 0), ("swa", 1))]
    for c in cfgs:
        c.stage1.batch_size, c.stage1.swag_rank, c.stage1.swa_start, c.stage1.swa_lr = 16, 2, 10, 0.02
    return cfgs, small(get_dataset("cifar10-lt-tiny").load(None, None), 48)


def main(kill_at: int, float64: bool = False) -> None:
    torch.set_num_threads(1)
    if kill_at:
        real, calls = batched.atomic_torch_save, [0]

        def save(path, obj):
            calls[0] += 1
            if calls[0] == kill_at:
                sys.stderr.write(f"batched_child: SIGKILL before write {kill_at} ({path})\n")
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, obj)
        batched.atomic_torch_save = save
    with float64_pipeline() if float64 else contextlib.nullcontext():
        cfgs, data = group()
        batched.train_stage1_batched(cfgs, data, torch.device("cpu"),
                                     echo=lambda s: print(s, file=sys.stderr, flush=True))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0, "float64" in sys.argv[2:])
