"""The run store: ``<results>/runs/<dataset>[-if<N>][-subset<K>]/<stage1>-<method>/seed<S>/`` (``ltbench.paths``).

A run folder is assembled in a hidden temporary folder beside its final place and renamed into place in one
step, so a reader never sees a half-written run and a killed run leaves nothing behind but that hidden folder.
"""
from __future__ import annotations

import errno
import io
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LtbenchError
from .paths import iter_run_dirs, run_dir, runs_root  # noqa: F401  (iter_run_dirs, run_dir: re-exported)


class RunExistsError(LtbenchError):
    """The run folder was written by another process while this one was running; nothing was overwritten."""

RUN_FILES = ("config.json", "metrics.json", "predictions.npz", "log.jsonl", "reliability.png")
PREDICTION_KEYS = {"labels": np.int64, "pred": np.int64, "confidence": np.float32,
                   "log_prob_true": np.float32, "sq_prob_sum": np.float32}


def is_complete(d: Path) -> bool:
    return all((Path(d) / f).is_file() for f in ("config.json", "metrics.json", "predictions.npz"))


def check_writable(results: Path | str) -> None:
    """Fail before any training if the results folder cannot take a run."""
    results = Path(results)
    try:
        runs_root(results).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs_root(results), prefix=".probe-"):
            pass
    except OSError as e:
        raise LtbenchError(f"results folder {results} is not writable ({e.strerror or e}); fix its permissions or "
                           "pass --results DIR") from None


def _tmp_prefix(name: str, kind: str = "tmp") -> str:
    """Hidden sibling name of a folder being written: ``.<name>.<kind>-<host>.<pid>-``.

    Host and pid say whose it is, so a later writer can tell a dead process's leftover (removed) from a
    concurrent writer's folder (left alone).
    """
    return f".{name}.{kind}-{socket.gethostname()}.{os.getpid()}-"


def _owner_alive(entry: str) -> bool:
    """False only when ``entry`` (a hidden tmp/old folder name) belongs to a process of this host that is gone."""
    try:
        owner = entry.split(".tmp-", 1)[1] if ".tmp-" in entry else entry.split(".old-", 1)[1]
        host, rest = owner.rsplit(".", 1)
        pid = int(rest.split("-", 1)[0])
    except (IndexError, ValueError):
        return True  # not ours / old naming: leave it to `bench.py results check --clean`
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_leftovers(parent: Path, name: str | None = None) -> list[Path]:
    """Remove hidden ``.<name>.tmp-*`` / ``.<name>.old-*`` folders left in ``parent`` by killed writers.

    Only folders whose writer is known to be dead (same host, pid not running) are removed, so a concurrent
    writer's half-built folder is never touched. Returns the removed paths.
    """
    parent = Path(parent)
    removed = []
    if not parent.is_dir():
        return removed
    for e in parent.iterdir():
        if not e.is_dir() or not e.name.startswith(".") or not (".tmp-" in e.name or ".old-" in e.name):
            continue
        if name is not None and not e.name.startswith(f".{name}."):
            continue
        if not _owner_alive(e.name):
            shutil.rmtree(e, ignore_errors=True)
            removed.append(e)
    return removed


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def write_run(d: Path, config: dict, metrics: dict, arrays: dict[str, np.ndarray], log_rows: list[dict],
              reliability_png: bytes, logits: np.ndarray | None = None, replace: bool = False) -> Path:
    """Write all files of a run at once. Returns the final folder."""
    d = Path(d)
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_leftovers(d.parent, d.name)
        tmp = Path(tempfile.mkdtemp(dir=d.parent, prefix=_tmp_prefix(d.name)))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a run folder is meant to be shared
    except OSError as e:
        raise LtbenchError(f"cannot create the run folder under {d.parent}: {e.strerror or e}") from None
    try:
        files = {
            "config.json": (json.dumps(config, indent=2, sort_keys=True, default=str) + "\n").encode(),
            "metrics.json": (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode(),
            "predictions.npz": _npz_bytes({k: np.asarray(arrays[k], dtype=t) for k, t in PREDICTION_KEYS.items()}),
            "log.jsonl": "".join(json.dumps(r, sort_keys=True) + "\n" for r in log_rows).encode(),
            "reliability.png": reliability_png,
        }
        if logits is not None:
            files["logits.npz"] = _npz_bytes({"logits": logits.astype(np.float32)})
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if d.exists() and not replace:
            raise RunExistsError(f"run folder {d} already exists (written by another process?); "
                                 "nothing was overwritten. Use --force to replace it.")
        old = None
        if replace and d.exists():
            # a kill between the two renames leaves no run folder (the old one waits, hidden, in `old`)
            old = Path(tempfile.mkdtemp(dir=d.parent, prefix=_tmp_prefix(d.name, "old")))
            try:
                os.rename(d, old / d.name)
            except FileNotFoundError:
                pass  # another --force writer moved it first
        try:
            os.rename(tmp, d)  # atomic; fails on an existing (never empty) run folder
        except OSError as e:
            if old is not None and (old / d.name).exists() and not d.exists():
                os.rename(old / d.name, d)  # put the previous run back
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            raise RunExistsError(f"run folder {d} appeared while this run was writing (another process "
                                 "finished the same run first); nothing was overwritten.") from None
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise LtbenchError(f"cannot write run {d}: {e.strerror or e}. Free disk space or choose another "
                           "--results folder; nothing was recorded.") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return d


def read_run(d: Path) -> dict:
    d = Path(d)
    out = {"dir": d, "config": json.loads((d / "config.json").read_text()),
           "metrics": json.loads((d / "metrics.json").read_text())}
    with np.load(d / "predictions.npz") as z:
        out["predictions"] = {k: z[k] for k in z.files}
    return out


def as_recorded(x: Any) -> Any:
    """``x`` as config.json records it (tuples become lists, other objects their str), so a value compares equal
    to its stored self."""
    return json.loads(json.dumps(x, default=str))
