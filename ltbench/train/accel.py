"""torch.compile and CUDA graphs for stage 1, behind options, with fallbacks that never break a run.

* ``compile``: ``torch.compile(net)`` on any device where it is asked for (on this project's CPUs it gains ~5-10 %
  per step after a 45-70 s compile, so it is off by default).
* ``cuda_graphs``: CUDA only. ``torch.compile(mode="reduce-overhead")`` captures forward + backward in CUDA graphs
  (cudagraph trees), which removes the per-kernel launch cost that dominates a small ResNet-32 step on a big GPU;
  the SGD step stays eager so the per-step learning rate keeps working. Shapes are static (``dynamic=False``):
  the last partial batch of an epoch gets its own graph rather than being dropped, so every image is still seen
  once per epoch. Asked for on a CPU it is ignored with a message.

If compilation fails (no compiler, an unsupported op, a backend error) on the first call, the run continues
eagerly with the same module and says so; later errors are real errors and propagate.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

Echo = Callable[[str], None]


class CompiledOrEager:
    """Call the compiled module; if its *first* call raises, switch to the eager module for good."""

    def __init__(self, compiled: Callable, eager: nn.Module, echo: Echo, mark_steps: bool) -> None:
        self.compiled: Callable | None = compiled
        self.eager = eager
        self.echo = echo
        self.mark_steps = mark_steps
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            return self.eager(x)
        if self.mark_steps:
            # one training iteration per call: lets cudagraph trees reuse the graph's memory between steps
            torch.compiler.cudagraph_mark_step_begin()
        if self.calls > 0:
            return self.compiled(x)
        try:
            out = self.compiled(x)
        except Exception as e:  # noqa: BLE001 - any compile/backend failure: fall back, say why
            self.echo(f"stage 1: torch.compile failed on the first step ({type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}); continuing without compile / CUDA graphs")
            self.compiled = None
            return self.eager(x)
        self.calls += 1
        return out

    @property
    def active(self) -> bool:
        return self.compiled is not None


def accelerate(net: nn.Module, device: torch.device, compile: bool = False, cuda_graphs: bool = False,
               echo: Echo = print) -> Callable[[torch.Tensor], torch.Tensor]:
    """The callable stage 1 trains through: ``net`` itself, or a compiled / CUDA-graphed wrapper of it.

    Parameters and buffers stay those of ``net`` (checkpoints, SWA/SWAG and evaluation use ``net`` directly).
    """
    if cuda_graphs and device.type != "cuda":
        echo(f"stage 1: cuda_graphs needs a CUDA device; ignored on {device.type}")
        cuda_graphs = False
    if not (compile or cuda_graphs):
        return net
    mode = "reduce-overhead" if cuda_graphs else None
    try:
        compiled = torch.compile(net, mode=mode, dynamic=False)
    except Exception as e:  # noqa: BLE001 - e.g. torch.compile unsupported on this Python
        echo(f"stage 1: torch.compile unavailable ({type(e).__name__}: {e}); training eagerly")
        return net
    return CompiledOrEager(compiled, net, echo, mark_steps=cuda_graphs)
