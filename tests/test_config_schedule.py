"""config: the fewest --epochs for two SWA snapshots (bounded search) against brute force over the old definition,
and the schedule that enters every stage-1 key unchanged by the refactor."""
import json

import pytest

from ltbench.config import Stage1Config, epochs_for_two_snapshots, resolve
from ltbench.errors import LtbenchError


def _snapshots(swa_start: int, preset_epochs: int, epochs: int) -> int:
    """Snapshots of a run of ``epochs``, restated: SWA from round(swa_start * epochs / preset_epochs), clipped to
    [0, epochs - 1], one snapshot per epoch after it."""
    start = max(min(int(round(swa_start * (epochs / preset_epochs))), epochs - 1), 0)
    return epochs - start


@pytest.mark.parametrize("preset_epochs", [1, 2, 3, 10, 90, 200])
def test_fewest_epochs_equals_brute_force(preset_epochs):
    for swa_start in range(0, preset_epochs + 3):
        s = Stage1Config(epochs=preset_epochs, swa_start=swa_start, preset_epochs=preset_epochs)
        brute = next((e for e in range(2, 5000) if _snapshots(swa_start, preset_epochs, e) >= 2), None)
        assert epochs_for_two_snapshots(s) == brute, (swa_start, preset_epochs)


def test_swag_error_names_the_fewest_epochs():
    with pytest.raises(LtbenchError, match=r"collects 1 .*at least 5\)"):
        resolve("swag", "cifar10-lt-tiny", None, "swa", 0, "cifar-tiny", epochs=1)


@pytest.mark.parametrize("preset", ["cifar", "cifar-tiny", "imagenet-lt"])
def test_schedule_unchanged(preset):
    """stage1_schedule (part of every stage-1 key) equals the pre-refactor formula to the bit, for every length."""
    for epochs in range(1, 301):
        cfg = resolve("ce", "cifar10-lt-tiny", None, "swa", 0, preset, epochs=epochs)
        s = cfg.stage1
        ratio = s.epochs / s.preset_epochs
        old = {"warmup_epochs": float(s.warmup_epochs) * ratio,
               "swa_start": max(min(int(round(s.swa_start * ratio)), s.epochs - 1), 0)}
        got = cfg.stage1_schedule()
        assert json.dumps(got, sort_keys=True) == json.dumps(old, sort_keys=True)
        assert cfg.swa_snapshots == epochs - old["swa_start"]
