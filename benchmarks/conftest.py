"""Collects each benchmark's median round time and writes the ours-vs-reference ratio table at the end.

The table is printed and saved to ``benchmarks/results/<device>-<date>.json`` (``LTBENCH_BENCH_OUT`` overrides);
pytest-benchmark's own JSON comes from ``--benchmark-json``.
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
            rows.append({"metric": metric, "unit": o["unit"], "ours": o["rate"], "reference": r["rate"],
                         "ratio": o["rate"] / r["rate"], "paired_ratio_median": sides.get("paired_ratio_median"),
                         "paired_ratios": sides.get("paired_ratios"), "ours_detail": o, "reference_detail": r})
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


def pytest_terminal_summary(terminalreporter) -> None:
    if not RESULTS:
        return
    s = summary()
    tr = terminalreporter
    tr.section(f"ltbench: ours vs reference pipeline ({s['device']}: {s['device_name']})")
    tr.write_line(f"{'metric':<16}{'ours':>12}{'reference':>12}{'ratio':>8}{'paired':>8}  unit "
                  "(ratio: of medians; paired: median of per-round ratios, rounds interleaved)")
    for r in s["rows"]:
        pr = r["paired_ratio_median"]
        tr.write_line(f"{r['metric']:<16}{r['ours']:>12,.1f}{r['reference']:>12,.1f}{r['ratio']:>8.2f}"
                      f"{(pr if pr is not None else float('nan')):>8.2f}  {r['unit']}")
    out = os.environ.get("LTBENCH_BENCH_OUT") or str(
        Path(__file__).parent / "results" / f"{s['device']}-{_dt.date.today().isoformat()}.json")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(s, indent=2) + "\n")
    tr.write_line(f"ratio summary written to {out}")


@pytest.fixture(scope="session")
def bench_data():
    from common import load_data
    data, what = load_data()
    META["data"] = what
    META["train_images"] = len(data.train_labels)
    return data
