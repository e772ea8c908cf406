"""Shared test fixtures: an isolated stage-1 cache per session, and the path of ../shared/data when present."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LTBENCH_SHARED", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"
AUDIT_TOOL = SHARED / "tools" / "audit_run.py"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never read or write the user's ~/.cache/ltbench."""
    old = os.environ.get("LTBENCH_CACHE")
    os.environ["LTBENCH_CACHE"] = str(tmp_path_factory.mktemp("ltbench-cache"))
    yield
    if old is None:
        os.environ.pop("LTBENCH_CACHE", None)
    else:
        os.environ["LTBENCH_CACHE"] = old


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "cifar100" / "cifar100_train_lt_if10.npz").is_file():
        pytest.skip(f"real CIFAR data not found at {SHARED_DATA} (set LTBENCH_SHARED)")
    return SHARED_DATA
