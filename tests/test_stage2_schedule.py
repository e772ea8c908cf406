"""Stage 2's optional step schedule (``[stage2] lr_schedule = "step"``, for BagofTricks-LT's cRT: 5 warm-up epochs,
x0.1 at epochs 10 and 20 of 30): the learning rate written out independently, its validation, and the default
cosine stage 2 leaving config.json and the stage-2 cache key of existing runs unchanged."""
import json
from pathlib import Path

import pytest

from ltbench.config import resolve
from ltbench.errors import LtbenchError
from ltbench.paths import stage2_key
from ltbench.runner import finished_run_differs
from ltbench.train.head import stage2_lr

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "results" / "runs" / "cifar100-lt-if100" / "sgd-crt" / "seed0" / "config.json"


def _preset(tmp_path, stage2: str) -> str:
    base = (REPO / "ltbench" / "presets" / "cifar.toml").read_text()
    p = tmp_path / "p.toml"
    p.write_text(base.replace("[stage2]\n", "[stage2]\n" + stage2 + "\n", 1))
    return str(p)


def _cfg(preset="cifar", **kw):
    return resolve("crt", "cifar100-lt", 100, "sgd", 0, preset, device="cpu", **kw)


def test_step_schedule_against_the_rule_written_out(tmp_path):
    cfg = _cfg(_preset(tmp_path, 'lr_schedule = "step"\nlr_milestones = [10, 20]\nwarmup_epochs = 5'), stage2_epochs=30)
    lr = stage2_lr(cfg.stage2)

    def expected(epoch: int) -> float:  # whole-epoch warm-up (epoch e < 5 at 0.1 (e + 1) / 5), then x0.1 per milestone
        if epoch < 5:
            return 0.1 * (epoch + 1) / 5
        return 0.1 * (0.1 if epoch >= 10 else 1) * (0.1 if epoch >= 20 else 1)
    for epoch in range(30):
        for frac in (0.0, 0.5, 0.99):
            assert lr(epoch + frac) == pytest.approx(expected(epoch), rel=1e-12)


def test_default_stage2_is_cosine_and_records_what_existing_runs_recorded():
    cfg = _cfg()
    lr = stage2_lr(cfg.stage2)
    assert lr(0.0) == pytest.approx(0.1) and lr(5.0) == pytest.approx(0.05) and lr(10.0) == pytest.approx(0.0)
    old = json.loads(COMMITTED.read_text())
    assert cfg.to_dict()["stage2"] == old["stage2"]  # the new fields stay out of a cosine run's record
    assert "lr_schedule" not in cfg.stage2.recorded() and "warmup_epochs" not in cfg.stage2.recorded()


def test_a_step_stage2_is_another_run_and_another_cache_entry(tmp_path):
    cosine, step = _cfg(), _cfg(_preset(tmp_path, 'lr_schedule = "step"\nlr_milestones = [3, 6]'))
    assert stage2_key(cosine) != stage2_key(step)
    assert step.to_dict()["stage2"]["lr_milestones"] == [3, 6]
    differs = finished_run_differs(step, COMMITTED.parent)  # the committed cosine cRT is not this run
    assert differs and "stage2.lr_schedule 'cosine' there, 'step' asked" in differs


@pytest.mark.parametrize("stage2, words", [
    ('lr_schedule = "steps"', "lr_schedule must be 'cosine' or 'step'"),
    ('lr_schedule = "step"\nlr_milestones = [6, 3]', "lr_milestones must be increasing"),
    ('lr_schedule = "step"\nlr_milestones = [10]', "lr_milestones must be increasing"),
    ('lr_schedule = "step"\nlr_milestones = [3]\nlr_gamma = 0.0', "lr_gamma must be in (0, 1]"),
    ("warmup_epochs = 10", "warmup_epochs must be >= 0 and below"),
])
def test_bad_stage2_schedules_are_refused_before_any_work(tmp_path, stage2, words):
    with pytest.raises(LtbenchError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        _cfg(_preset(tmp_path, stage2))
