"""Collects each benchmark's round times and writes the ours-vs-reference speed-up table at the end.

The table is printed and saved to ``outputs/benchmarks/<device>-<date>.json`` (git-ignored), or to the file named
by ``LTBENCH_BENCH_OUT``; only ``--bench-record`` writes into the committed ``benchmarks/results/``, so an ordinary
benchmark run leaves the working tree clean. pytest-benchmark's own JSON comes from ``--benchmark-json``.

The headline speed-up is the paired one: every round times our side and then the reference back to back, and the
speed-up is the median over rounds of (reference time / our time). Load drift on a shared machine hits both halves
of a round alike and cancels; the ratio of the two sides' separate medians does not pair them, so one busy stretch
can swing it (e.g. 0.46 against a paired 1.17 on a loaded 2-core machine). It is printed, labelled, to show the
spread; when the two disagree by more than 20 % the table says the machine was not quiet.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RESULTS: dict[str, dict] = {}  # metric -> {"ours"/"reference": {...}, "paired_ratio_median": float}
META: dict = {}


def record(metric: str, side: str, median_s: float, items_per_round: int, unit: str, **extra) -> None:
    """Store a median round time; ``items_per_round`` images (or steps) per round."""
    RESULTS.setdefault(metric, {})[side] = {"median_round_s": median_s, "items_per_round": items_per_round,
                                            "rate": items_per_round / median_s, "unit": unit, **extra}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def summary() -> dict:
    rows = []
    for metric, sides in RESULTS.items():
        if "ours" in sides and "reference" in sides:
            o, r = sides["ours"], sides["reference"]
            row = {"metric": metric, "unit": o["unit"], "ours": o["rate"], "reference": r["rate"],
                   "ratio": o["rate"] / r["rate"], "paired_ratio_median": sides.get("paired_ratio_median"),
                   "paired_ratios": sides.get("paired_ratios"), "ours_detail": o, "reference_detail": r}
            rows.append({**row, "speedup": headline(row), "speedup_is": "paired_ratio_median"
                         if row["paired_ratio_median"] is not None else "ratio"})
    from common import bench_device
    dev = bench_device()
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": dev.type,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        **META, "rows": rows,
    }


DISAGREE = 0.2  # paired vs of-medians ratio differing by more than this fraction: the load varied


def pytest_addoption(parser) -> None:
    parser.addoption("--bench-record", action="store_true", default=False,
                     help="ltbench: write the speed-up summary into the committed benchmarks/results/ "
                          "(default: outputs/benchmarks/, git-ignored; LTBENCH_BENCH_OUT names a file)")


def pytest_configure(config) -> None:
    """pytest-benchmark opens ``--benchmark-json PATH`` without creating its folder: create it, so the documented
    ``--benchmark-json=outputs/benchmarks/...`` (git-ignored) works on a fresh clone."""
    path = config.getoption("benchmark_json", default=None)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def ratio_path(device: str, record: bool = False, env: dict | None = None, today: str | None = None) -> Path:
    """Where the speed-up summary goes: $LTBENCH_BENCH_OUT, else benchmarks/results/ with ``record`` (a record
    meant to be committed), else the git-ignored outputs/benchmarks/."""
    env = os.environ if env is None else env
    if env.get("LTBENCH_BENCH_OUT"):
        return Path(env["LTBENCH_BENCH_OUT"])
    name = f"{device}-{today or _dt.date.today().isoformat()}.json"
    here = Path(__file__).resolve().parent
    return here / "results" / name if record else here.parent / "outputs" / "benchmarks" / name


def headline(row: dict) -> float:
    """The speed-up that counts: the paired one when measured (always, for the interleaved benchmarks)."""
    pr = row.get("paired_ratio_median")
    return pr if pr is not None else row["ratio"]


def summary_lines(s: dict) -> list[str]:
    """The terminal table: one headline speed-up per metric, the ratio of medians labelled as a check."""
    lines = [f"{'metric':<14}  {'speed-up':>8}  {'rounds':>11}  {'ours':>10}  {'reference':>10}  unit     "
             f"{'of medians':>10}"]
    noisy = []
    for r in s["rows"]:
        ratios = r.get("paired_ratios") or []
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        lines.append(f"{r['metric']:<14}  {headline(r):>7.2f}x  {spread:>11}  {r['ours']:>10,.1f}  "
                     f"{r['reference']:>10,.1f}  {r['unit']:<7}  {r['ratio']:>9.2f}x")
        if r.get("paired_ratio_median") is not None and abs(r["ratio"] / headline(r) - 1) > DISAGREE:
            noisy.append(r["metric"])
    lines += ["speed-up: ours vs reference, median over rounds of (reference time / our time); each round runs "
              "both sides back to back, so load drift cancels. This is the number to quote.",
              "rounds: lowest-highest per-round speed-up. ours/reference: rate of each side's median round. "
              "of medians: ratio of those two rates, unpaired (shown as a check only)."]
    if noisy:
        lines.append(f"note: for {', '.join(noisy)} the unpaired ratio differs from the paired speed-up by more "
                     f"than {DISAGREE:.0%}: the machine load changed during the run; quote the paired speed-up, "
                     "or rerun on a quiet machine.")
    return lines


def pytest_terminal_summary(terminalreporter, config) -> None:
    if not RESULTS:
        return
    s = summary()
    tr = terminalreporter
    tr.section(f"ltbench: ours vs reference pipeline ({s['device']}: {s['device_name']})")
    for line in summary_lines(s):
        tr.write_line(line)
    out = ratio_path(s["device"], record=config.getoption("--bench-record", default=False))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(s, indent=2) + "\n")
    tr.write_line(f"speed-up summary written to {out}")


@pytest.fixture(scope="session")
def bench_data():
    from common import load_data
    data, what = load_data()
    META["data"] = what
    META["train_images"] = len(data.train_labels)
    return data
