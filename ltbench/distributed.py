"""DDP helpers for torchrun: process-group setup, rank-0-only I/O, exact gathers and BN-statistics averaging.

Every function is a no-op (or the identity) when no process group is running, so single-process code paths are
unchanged. Data sharding lives in the datasets (``FileListLTData``): every rank draws the same global index order
from the same seeded generator and keeps its own part, so a checkpoint (epoch + generator state) resumes on any
world size.
"""
from __future__ import annotations

import atexit
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from .errors import LtbenchError


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    return (dist.get_rank(), dist.get_world_size()) if is_dist() else (0, 1)


def is_main() -> bool:
    return rank_world()[0] == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(device_name: str = "auto") -> torch.device:
    """Join the torchrun process group (NCCL on CUDA, gloo on CPU) and return this rank's device.

    Reads RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT as torchrun sets them. Without torchrun
    (or with WORLD_SIZE=1) it does nothing and returns the device ``device_name`` resolves to.
    """
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if device_name == "cuda" and not torch.cuda.is_available():
        raise LtbenchError("--device cuda was asked for but no CUDA device is available; use --device cpu or auto")
    if not launched_by_torchrun():
        return torch.device("cuda" if use_cuda else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise LtbenchError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices here; "
                               "use --nproc_per_node <= the number of GPUs")
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not is_dist():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30),
                                device_id=device if use_cuda else None)
        atexit.register(shutdown, wait_for_all=False)  # error paths: no barrier a failed peer would never reach
    return device


def shutdown(wait_for_all: bool = True) -> None:
    """Leave the process group: wait for every rank (on success), then destroy it; a no-op without one.

    A process that exits with a live gloo group, or destroys it while a peer is still communicating, can abort at
    exit ("terminate called without an active exception") after a correct run; seen once in CI on a 2-rank test.
    """
    if not is_dist():
        return
    try:
        if wait_for_all:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (rank 0 reads a checkpoint, everyone gets it: no shared FS needed)."""
    if not is_dist():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks (a new tensor on ``t``'s device)."""
    if not is_dist():
        return t.clone()
    out = t.detach().to(_comm_device()).clone()
    dist.all_reduce(out)
    return out.to(t.device)


def gather_ordered(index: torch.Tensor, *values: torch.Tensor, total: int) -> tuple[torch.Tensor, ...]:
    """Gather per-rank rows (tagged with their dataset ``index``) into dataset order on every rank.

    Ranks may hold different numbers of rows (including none). Every index in [0, total) must arrive exactly once;
    a duplicate or a gap raises, so no example is silently counted twice or dropped.
    """
    if not is_dist():
        order = torch.argsort(index)
        if len(index) != total or not torch.equal(index[order], torch.arange(total)):
            raise RuntimeError(f"gather_ordered: got {len(index)} rows for {total} examples")
        return tuple(v[order] for v in values)
    dev = _comm_device()
    world = dist.get_world_size()
    n = torch.tensor([len(index)], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes_i = [int(s) for s in sizes]
    m = max(sizes_i)

    def gather(t: torch.Tensor) -> torch.Tensor:
        pad = torch.zeros((m - len(t),) + tuple(t.shape[1:]), dtype=t.dtype, device=dev)
        local = torch.cat([t.to(dev), pad])
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat([p[:k] for p, k in zip(parts, sizes_i)]).cpu()

    idx = gather(index.long())
    counts = torch.bincount(idx, minlength=total)
    if len(counts) != total or bool((counts != 1).any()):
        dup = int((counts > 1).sum()) if len(counts) == total else -1
        raise RuntimeError(f"gather_ordered: {len(idx)} rows for {total} examples ({dup} duplicated); "
                           "the shards do not partition the dataset")
    order = torch.argsort(idx)
    return tuple(gather(v)[order] for v in values)


def average_bn_stats(net: nn.Module, local_batches: int = 1, count_batches: bool = False) -> None:
    """Make BN running statistics identical on every rank: the batch-count-weighted mean of each rank's.

    ``torch.optim.swa_utils.update_bn`` leaves, per rank, the plain mean of the per-batch statistics over the
    batches that rank saw. When each rank sees whole global batches (round-robin), this weighted mean is exactly
    the single-process result over all batches. During training (weight 1 per rank) it keeps the ranks' EMA
    statistics identical, so every rank evaluates the same network.
    """
    if not is_dist():
        return
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    w = float(local_batches)
    flat = torch.cat([torch.cat([m.running_mean.double().flatten() * w, m.running_var.double().flatten() * w])
                      for m in bns] + [torch.tensor([w], dtype=torch.float64, device=bns[0].running_mean.device)])
    tot = all_reduce_sum(flat)
    total_w = float(tot[-1])
    if total_w <= 0:
        raise LtbenchError("BN recomputation saw no training batches on any rank")
    i = 0
    with torch.no_grad():
        for m in bns:
            k = m.running_mean.numel()
            m.running_mean.copy_((tot[i:i + k] / total_w).view_as(m.running_mean))
            m.running_var.copy_((tot[i + k:i + 2 * k] / total_w).view_as(m.running_var))
            if count_batches and m.num_batches_tracked is not None:
                m.num_batches_tracked.fill_(int(total_w))
            i += 2 * k


def wrap_ddp(net: nn.Module, device: torch.device) -> nn.Module:
    """``net`` itself without a process group, else DDP(net); callers keep ``net`` for state dicts (no ``module.``)."""
    if not is_dist() or dist.get_world_size() == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel as DDP
    return DDP(net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)


def shard(indices: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's part of ``indices``: positions rank, rank + world, ... (sizes differ by at most one)."""
    return indices[rank::world]
