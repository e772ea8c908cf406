"""Run `bench.py ARGS...` in this process and SIGKILL it at the N-th call of one file-system function.

usage: python tests/kill_child.py FUNC N -- run --method ...   (FUNC: fsync, replace, rename, unlink:<name>)

``fsync`` precedes every durable write (each atomic checkpoint / cache file and each run-folder file), so
sweeping N over 1..total kills the run at every write point; ``rename`` is the run-folder rename; ``replace`` the
atomic checkpoint renames; ``unlink:ckpt.pt`` the removal of the stage-1 checkpoint after ``final.pt``.
"""
from __future__ import annotations

import os
import pathlib
import signal
import sys

func, n = sys.argv[1], int(sys.argv[2])
args = sys.argv[sys.argv.index("--") + 1:]
calls = {"n": 0}


def _hit() -> bool:
    calls["n"] += 1
    if calls["n"] == n:
        sys.stderr.write(f"kill_child: SIGKILL at {func} call {n}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return False


def _wrap(mod, name):
    real = getattr(mod, name)

    def hooked(*a, **kw):
        _hit()
        return real(*a, **kw)
    setattr(mod, name, hooked)


if func in ("fsync", "replace", "rename"):
    _wrap(os, func)
elif func.startswith("unlink:"):
    target = func.split(":", 1)[1]
    real_unlink = pathlib.Path.unlink

    def unlink(self, *a, **kw):
        if self.name == target:
            _hit()
        return real_unlink(self, *a, **kw)
    pathlib.Path.unlink = unlink
else:
    sys.exit(f"unknown FUNC {func}")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.argv = ["bench.py", *args]
import bench  # noqa: E402

bench.cli()
