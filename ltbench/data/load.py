"""Loading the data of a run: the one call that turns a ``RunConfig`` into its dataset.

The runner, the grid's batched stage 1 and its calibration all load data for a config; doing it here keeps the
arguments (data root, imbalance factor, the preset's ``[data]`` load options, the subset seed) from drifting apart.
"""
from __future__ import annotations

from typing import Any

from ..registry import get_dataset


def load_run_data(cfg: Any):
    """The dataset ``cfg`` trains and evaluates on (``LTData``), checked by its loader before anything trains.

    The subset seed is passed only when it is not the protocol's 0, so a loader without random subsets needs no
    such argument (and every spec that has one refuses a non-zero value with a clear message)."""
    spec = get_dataset(cfg.dataset)
    kw = dict(cfg.data or {})
    if getattr(cfg, "subset_seed", 0):
        kw["subset_seed"] = cfg.subset_seed
    return spec.load(cfg.data_root, cfg.imbalance, **kw)
