"""The LDAM-DRW / BagofTricks-LT step schedule (``lr_schedule = "step"``, preset ``cifar-ldam``): the learning rate
against LDAM-DRW's ``adjust_learning_rate`` written out independently, its validation, and stage-1 cache keys of
the default cosine schedule left unchanged by the new fields."""
import json
from pathlib import Path

import pytest

from ltbench.config import PRESET_DIR, resolve
from ltbench.errors import LtbenchError
from ltbench.train.stage1 import lr_function

REPO = Path(__file__).resolve().parents[1]


def ldam_drw_lr(epoch: int, base: float = 0.1) -> float:
    """LDAM-DRW cifar_train.py, per (0-based) epoch: 5 warm-up epochs, x0.01 after 160, x0.0001 after 180."""
    e = epoch + 1
    if e <= 5:
        return base * e / 5
    if e > 180:
        return base * 0.0001
    if e > 160:
        return base * 0.01
    return base


def _cfg(mode: str = "sgd", preset: str = "cifar-ldam", **kw):
    return resolve("ce", "cifar100-lt", 100, mode, 0, preset, device="cpu", **kw)


def test_the_step_schedule_matches_ldam_drw_after_warm_up():
    lr = lr_function(_cfg())
    for epoch in range(200):  # warm-up included: by whole epochs, as LDAM-DRW
        for frac in (0.0, 0.5, 0.99):
            assert lr(epoch + frac) == pytest.approx(ldam_drw_lr(epoch), rel=1e-12), epoch + frac


def test_swa_keeps_the_step_schedule_until_swa_start_then_the_constant_swa_lr():
    cfg = _cfg("swa")
    lr = lr_function(cfg)
    assert [lr(t) for t in (10.0, 149.9)] == pytest.approx([0.1, 0.1])
    assert [lr(t) for t in (150.0, 170.0, 199.9)] == pytest.approx([cfg.stage1.swa_lr] * 3)


def test_milestones_after_the_swa_start_are_recorded_only_where_they_happen():
    """Old: an SWA stage 1 on the step preset silently never applied its milestones (160, 180 >= swa_start 150)."""
    swa = _cfg("swa")
    lr = lr_function(swa)
    late = [m for m in (160, 180) if lr(m + 0.5) == pytest.approx(swa.stage1.swa_lr)]  # read off the schedule
    assert swa.lr_milestones_after_swa_start() == pytest.approx(late) and late == [160, 180]
    assert swa.to_dict()["stage1_lr_milestones_unused"] == pytest.approx([160.0, 180.0])
    for cfg in (_cfg("sgd"), _cfg("swa", preset="cifar")):
        assert cfg.lr_milestones_after_swa_start() == [] and "stage1_lr_milestones_unused" not in cfg.to_dict()
    short = _cfg("swa", epochs=20)  # scaled with the run: SWA from 15, milestones 16 and 18
    assert short.lr_milestones_after_swa_start() == pytest.approx([16.0, 18.0])


def test_every_run_on_such_an_extractor_is_told_trained_or_reused(tmp_path, monkeypatch):
    """Only the milestones at or after the SWA start are named, by the run that trains the extractor and by each run
    that reuses it (a grid trains once, then seven more methods read the cache)."""
    import torch

    from ltbench.registry import get_dataset
    from ltbench.train.stage1 import get_stage1
    from tiny_data import small

    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path))
    data = small(get_dataset("cifar100-lt-tiny").load(None, None), 20)
    cfg = resolve("ce", "cifar100-lt-tiny", None, "swa", 0, "cifar-tiny", epochs=3, device="cpu")
    s = cfg.stage1  # preset: 30 epochs, SWA from 20; scaled to 3 epochs: SWA from 2, milestones 1 and 2.5
    s.lr_schedule, s.lr_milestones, s.lr_gamma, s.batch_size, s.swag_rank = "step", [10, 25], 0.1, 10, 2
    assert cfg.stage1_schedule()["swa_start"] == 2
    said: list[str] = []
    for _ in range(2):
        get_stage1(cfg, data, torch.device("cpu"), echo=said.append)
    notes = [x for x in said if "note: lr milestones" in x]
    assert len(notes) == 2 and all("milestones 2.5 fall at or after the SWA start (epoch 2)" in x for x in notes)
    assert any("reusing" in x for x in said)


def test_milestones_scale_with_a_shortened_schedule_like_the_swa_start():
    cfg = _cfg(epochs=20)
    assert cfg.stage1_schedule()["lr_milestones"] == pytest.approx([16.0, 18.0])
    lr = lr_function(cfg)
    assert [lr(15.9), lr(16.0), lr(18.0)] == pytest.approx([0.1, 0.1 * 0.01, 0.1 * 0.0001])


def test_the_cosine_default_keeps_the_stage1_keys_of_existing_runs():
    """Adding the step fields must not orphan cached stage-1 networks: the committed full-schedule run's key."""
    run = REPO / "results/runs/cifar100-lt-if100/sgd-ce/seed0/config.json"
    if not run.is_file():
        pytest.skip("no committed full-schedule run")
    c = json.loads(run.read_text())
    cfg = resolve("ce", "cifar100-lt", 100, "sgd", 0, "cifar", device="cpu")
    assert cfg.stage1_key(c["stage1_precision"]) == c["stage1_key"]
    assert "lr_milestones" not in cfg.stage1_schedule()
    assert _cfg().stage1_key("fp32") != cfg.stage1_key("fp32")


def _preset(tmp_path, **stage1) -> str:
    text = (PRESET_DIR / "cifar-ldam.toml").read_text()
    for k, v in stage1.items():
        head, sep, rest = text.partition(f"\n{k} = ")
        assert sep, k
        text = head + sep + v + "\n" + rest.split("\n", 1)[1]
    p = tmp_path / "p.toml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("key, value, words", [
    ("lr_schedule", '"steps"', "lr_schedule must be 'cosine' or 'step', got 'steps'"),
    ("lr_milestones", "[180, 160]", "lr_milestones must be increasing whole epochs between 1 and 199"),
    ("lr_milestones", "[160, 200]", "lr_milestones must be increasing whole epochs between 1 and 199"),
    ("lr_milestones", '["160"]', "[stage1] lr_milestones must be a list of whole numbers"),
    ("lr_gamma", "0", "lr_gamma must be in (0, 1], got 0"),
])
def test_a_bad_step_schedule_is_one_clear_error_before_any_training(tmp_path, key, value, words):
    with pytest.raises(LtbenchError, match=None) as e:
        resolve("ce", "cifar100-lt", 100, "sgd", 0, _preset(tmp_path, **{key: value}), device="cpu")
    assert words in str(e.value)
