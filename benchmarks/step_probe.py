"""The bare ResNet-32 training step on this CPU: bf16 autocast vs fp32, and one 2-thread process vs two 1-thread
processes at once (how to run two stage-1 groups on a 2-core machine), and eager vs torch.compile in the precision
a run resolves to (whether `--compile` pays here). Synthetic data: only the network is timed.

    python benchmarks/step_probe.py [--steps 15] [--no-compile] [--out FILE]   # JSON under outputs/benchmarks/
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_step(precision: str, compiled: bool = False, batch: int = 128, classes: int = 100):
    """One ResNet-32 training step on a fixed synthetic batch (channels_last, SGD with momentum), eager or through
    ``torch.compile``; the network is built from seed 0, so every variant starts alike."""
    import torch

    from ltbench.models import create_network
    from ltbench.train.loop import autocast_for

    torch.manual_seed(0)
    net = create_network("resnet32", classes).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    fwd = torch.compile(net) if compiled else net
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))
    dev = torch.device("cpu")

    def step():
        with autocast_for(dev, precision):
            loss = torch.nn.functional.cross_entropy(fwd(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def timed(step, steps: int, batch: int = 128) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t)


def rate(threads: int, precision: str, steps: int) -> float:
    """Training images/s of ``steps`` timed steps after 3 warm-up steps."""
    import torch
    torch.set_num_threads(threads)
    step = make_step(precision)
    for _ in range(3):
        step()
    return timed(step, steps)


def compile_ab(threads: int, precision: str, steps: int, rounds: int = 4) -> dict:
    """Eager vs ``torch.compile`` training steps in one process, alternating rounds of ``steps`` (host drift hits
    both sides alike); the compile time is reported, not counted in the rates."""
    import statistics

    import torch
    torch.set_num_threads(threads)
    steps_of, warm = {}, {}
    for c in (False, True):
        t = time.perf_counter()
        steps_of[c] = make_step(precision, compiled=c)
        for _ in range(3):
            steps_of[c]()
        warm[c] = time.perf_counter() - t
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for c in (False, True):
            rates[c].append(timed(steps_of[c], steps))
    ratios = [b / a for a, b in zip(rates[False], rates[True])]
    return {"precision": precision, "eager": rates[False], "compiled": rates[True],
            "compile_warmup_s": warm[True], "compiled_over_eager_median": statistics.median(ratios)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-compile", action="store_true", help="skip the eager-vs-compile rounds (~2 min)")
    ap.add_argument("--child", nargs=2, metavar=("THREADS", "PRECISION"), help=argparse.SUPPRESS)
    ap.add_argument("--compile-child", metavar="PRECISION", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(rate(int(a.child[0]), a.child[1], a.steps))
        return
    if a.compile_child:
        print(json.dumps(compile_ab(2, a.compile_child, max(5, a.steps // 2))))
        return
    from common import result_path
    from ltbench.runner import cpu_model
    from ltbench.train.loop import cpu_has_native_bf16

    def child(threads: int, precision: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, __file__, "--steps", str(a.steps), "--child", str(threads), precision],
                                stdout=subprocess.PIPE, text=True)

    def alone(threads: int, precision: str) -> float:
        return float(child(threads, precision).communicate()[0])
    out: dict = {"date": dt.datetime.now().isoformat(timespec="seconds"), "cpu_model": cpu_model(),
                 "cpu_native_bf16": cpu_has_native_bf16(), "steps": a.steps, "batch": 128, "classes": 100}
    out["one_process_2_threads"] = {p: alone(2, p) for p in ("bf16", "fp32")}
    for p in ("bf16", "fp32"):
        procs = [child(1, p), child(1, p)]
        rates = [float(q.communicate()[0]) for q in procs]
        out[f"two_processes_1_thread_{p}"] = {"each": rates, "together": sum(rates)}
    one = out["one_process_2_threads"]
    out["bf16_over_fp32_2_threads"] = one["bf16"] / one["fp32"]
    out["two_1_thread_over_one_2_thread_bf16"] = out["two_processes_1_thread_bf16"]["together"] / one["bf16"]
    if not a.no_compile:  # in the precision a run resolves to here (bf16 where native, else fp32)
        prec = "bf16" if out["cpu_native_bf16"] else "fp32"
        q = subprocess.run([sys.executable, __file__, "--steps", str(a.steps), "--compile-child", prec],
                           stdout=subprocess.PIPE, text=True, check=True)
        out["compile_2_threads"] = json.loads(q.stdout.strip().splitlines()[-1])
    print(json.dumps(out, indent=2))
    path = Path(a.out) if a.out else result_path(f"step-probe-cpu-{dt.date.today()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
