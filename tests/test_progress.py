"""ltbench.progress: a live bar on a terminal, plain periodic lines otherwise, nothing when quiet (fake clock)."""
from __future__ import annotations

import io
import re

from ltbench.progress import Progress, format_duration, track


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _consume(it, clock: FakeClock, seconds: float) -> list:
    """Work through ``it``, each item taking ``seconds`` of fake time (as a training step would)."""
    got = []
    for item in it:
        clock.t += seconds
        got.append(item)
    return got


def _batches(n_batches: int, size: int):
    return [([0] * size, i) for i in range(n_batches)]


def test_plain_lines_every_tenth_with_rate_and_eta():
    clock, out = FakeClock(), io.StringIO()
    # 20 batches of 50 images, 0.5 s each: 100 img/s, 10 s in all; no 30-s timer fires
    got = _consume(track(_batches(20, 50), total=1000, desc="epoch 1/3", weight=lambda b: len(b[0]),
                         stream=out, tty=False, clock=clock), clock, 0.5)
    assert len(got) == 20
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    progress, final = lines[:-1], lines[-1]
    assert len(progress) == 9  # 10 %, 20 %, ..., 90 %; 100 % is the closing line
    for k, line in enumerate(progress, start=1):
        done = 100 * k
        elapsed = done / 100  # seconds at 100 img/s
        assert line == (f"epoch 1/3: {done:,}/1,000 img ({10 * k}%), 100.0 img/s, elapsed "
                        f"{format_duration(elapsed)}, ETA {format_duration((1000 - done) / 100)}")
    assert final == "epoch 1/3: done, 1,000 img in 10s, 100.0 img/s"


def test_plain_lines_by_time_when_total_unknown():
    clock, out = FakeClock(), io.StringIO()
    p = Progress(None, desc="features", stream=out, tty=False, every_s=30, clock=clock)
    for _ in range(100):  # 100 steps of 64 images, 1 s each
        clock.t += 1
        p.update(64)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[:3] == ["features: 1,920 img, 64.0 img/s, elapsed 30s",
                         "features: 3,840 img, 64.0 img/s, elapsed 1m00s",
                         "features: 5,760 img, 64.0 img/s, elapsed 1m30s"]
    assert lines[-1] == "features: done, 6,400 img in 1m40s, 64.0 img/s" and len(lines) == 4


def test_slow_work_prints_on_the_timer_between_tenths():
    clock, out = FakeClock(), io.StringIO()
    p = Progress(10, desc="stage 1", unit="batch", stream=out, tty=False, every_s=30, clock=clock)
    clock.t += 95  # the first batch takes 95 s: one line at the first tenth
    p.update()
    clock.t += 20  # 20 s later, under both thresholds: nothing
    p.update(0)
    clock.t += 15  # 35 s after the last line: the timer fires
    p.update(0)
    lines = out.getvalue().splitlines()
    assert lines == ["stage 1: 1/10 batch (10%), 0.0 batch/s, elapsed 1m35s, ETA 14m15s",
                     "stage 1: 1/10 batch (10%), 0.0 batch/s, elapsed 2m10s, ETA 19m30s"]


def test_tty_bar_has_rate_and_eta():
    clock, out = FakeClock(), io.StringIO()
    _consume(track(_batches(10, 100), total=1000, desc="stage 2", weight=lambda b: len(b[0]),
                   stream=out, tty=True, clock=clock), clock, 0.5)
    text = out.getvalue()
    assert "\r" in text  # redrawn in place
    last = text.replace("\n", "\r").split("\r")
    last = [s for s in last if s.strip()][-1]
    assert last.startswith("stage 2: 100%") and "1.00k/1.00k" in last
    assert re.search(r"200img/s", last), last  # 100 images per 0.5 s of fake time
    mid = [s for s in text.split("\r") if "50%" in s]
    assert mid == ["stage 2:  50%|#####     | 500/1.00k [00:02<00:02, 200img/s]"]  # ETA: 500 left at 200/s


def test_quiet_is_silent():
    clock, out = FakeClock(), io.StringIO()
    for tty in (True, False):
        got = _consume(track(_batches(5, 10), total=50, weight=lambda b: len(b[0]), quiet=True,
                             stream=out, tty=tty, clock=clock), clock, 10.0)
        assert len(got) == 5
    assert out.getvalue() == ""


def test_len_is_the_default_total():
    clock, out = FakeClock(), io.StringIO()
    list(track(range(4), desc="grid", unit="run", stream=out, tty=False, every_frac=0.5, clock=clock))
    assert out.getvalue().splitlines()[0].startswith("grid: 2/4 run (50%)")


def test_format_duration():
    assert [format_duration(s) for s in (0, 12.4, 60, 200, 3600, 3725)] == ["0s", "12s", "1m00s", "3m20s",
                                                                          "1h00m", "1h02m"]


def test_activity_says_the_steps_done_and_the_time_to_go_at_the_pace_since_begin():
    """What the grid's heartbeat shows while a silenced run trains stage 1: resumed epochs count as done but not
    towards the pace (they took no time in this process), and the time to go falls between two epochs."""
    from ltbench.progress import Activity

    clock = FakeClock()
    a = Activity(clock=clock)
    assert a.text() is None
    a.begin("stage 1 [sgd]", 200, done=50)                     # resumed at epoch 50
    assert a.text() == "stage 1 [sgd] 50/200 epochs done"      # no pace yet: no time to go
    clock.t += 30
    a.update(51)
    clock.t += 30
    a.update(52)                                               # 2 epochs in 60 s: 148 left x 30 s = 4440 s
    assert a.text() == "stage 1 [sgd] 52/200 epochs done, ~1h14m to go"
    clock.t += 20                                              # 20 s into epoch 53: 4420 s
    assert a.text() == "stage 1 [sgd] 52/200 epochs done, ~1h13m to go"
    assert a.text(fmt=lambda sec: f"{sec:.0f}s") == "stage 1 [sgd] 52/200 epochs done, ~4420s to go"
    clock.t += 9000                                            # far slower than the pace: never negative
    assert a.text(fmt=lambda sec: f"{sec:.0f}s").endswith("~0s to go")
    a.update(200)
    assert a.text() == "stage 1 [sgd] 200/200 epochs done"
    a.end()
    assert a.text() is None


def test_stage1_sets_the_activity_each_epoch_and_clears_it_after(tmp_path, monkeypatch):
    import pytest
    import torch

    import ltbench.train.stage1 as stage1
    from ltbench.config import resolve
    from ltbench.progress import ACTIVITY
    from ltbench.registry import get_dataset
    from tiny_data import small

    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path))
    data = small(get_dataset("cifar100-lt-tiny").load(None, None), 20)
    cfg = resolve("ce", "cifar100-lt-tiny", None, "sgd", 0, "cifar-tiny", epochs=2, device="cpu")
    cfg.stage1.batch_size = 10
    seen: list[tuple[str, str | None]] = []
    stage1.get_stage1(cfg, data, torch.device("cpu"), echo=lambda s: seen.append((s, ACTIVITY.text())))
    at_epochs = [act for line, act in seen if " epoch " in line and "loss" in line]
    assert len(at_epochs) == 2
    assert at_epochs[0].startswith("stage 1 [sgd] 1/2 epochs done, ~") and at_epochs[0].endswith(" to go")
    assert at_epochs[1] == "stage 1 [sgd] 2/2 epochs done"
    assert ACTIVITY.text() is None
    # a stage 1 that fails mid-way does not leave a stale line behind for the next run's heartbeat
    def boom(*a, **kw):
        assert ACTIVITY.text() == "stage 1 [swa] 0/2 epochs done"
        raise RuntimeError("boom")
    monkeypatch.setattr(stage1, "train_one_epoch", boom)
    swa = resolve("ce", "cifar100-lt-tiny", None, "swa", 0, "cifar-tiny", epochs=2, device="cpu")
    with pytest.raises(RuntimeError, match="boom"):
        stage1.get_stage1(swa, data, torch.device("cpu"), echo=lambda s: None)
    assert ACTIVITY.text() is None


def test_a_nested_step_gives_the_line_back_to_the_step_it_ran_inside():
    """A step inside another used to clear the line on leaving: the heartbeat then said nothing for the rest of
    the outer step."""
    from ltbench.progress import Activity

    clock = FakeClock()
    a = Activity(clock=clock)
    with a.running("SWAG pool: drawing", 8, unit="samples"):
        clock.t += 10
        a.update(3)
        with a.running("inner pass", 100, unit="images"):
            clock.t += 4
            a.update(40)
            assert a.text() == "inner pass 40/100 images done, ~6s to go"  # 60 left at 0.1 s each
        assert a.text().startswith("SWAG pool: drawing 3/8 samples done, ~")  # its count and pace kept
        a.update(8)
        assert a.text() == "SWAG pool: drawing 8/8 samples done"
    assert a.text() is None
    with a.running("outer", 2):  # an exception inside the nested step restores the outer line too
        try:
            with a.running("inner", 5):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        assert a.text() == "outer 0/2 epochs done"
    assert a.text() is None


def test_a_step_left_late_does_not_overwrite_a_step_begun_since():
    """A pass held open in a generator that is closed only when collected (after its caller failed) must not
    put back its old line over the next run's."""
    from ltbench.progress import Activity

    a = Activity(clock=FakeClock())

    def passes():
        with a.running("pass A", 10, unit="images"):
            yield 1
            yield 2

    g = passes()
    next(g)                                   # pass A begins, then its consumer fails and drops it unclosed
    a.begin("stage 1 [swa]", 200)             # the next run's stage 1 takes the line
    g.close()                                 # pass A is left late
    assert a.text() == "stage 1 [swa] 0/200 epochs done"


def test_a_one_pass_feature_pass_is_the_activity_while_it_runs_in_images():
    """The one-pass SWAG pool (one data pass for all samples) has no per-sample steps: the pass itself, counted
    in images, is what the grid's heartbeat shows, and nothing once it is over."""
    from types import SimpleNamespace

    from ltbench.progress import ACTIVITY
    from ltbench.train.features import tracked

    ctx = SimpleNamespace(data=SimpleNamespace(train_labels=[0] * 25, test_labels=[0] * 7),
                          echo=SimpleNamespace(quiet=True))
    batches = [([0] * 10, [0] * 10), ([0] * 10, [0] * 10), ([0] * 5, [0] * 5)]
    seen = [ACTIVITY.text() for _ in tracked(ctx, batches, "BN pass", "train", activity="SWAG pool: BN pass")]
    heads = [t.split(",")[0] for t in seen]  # after the first batch the line also has a time to go
    assert heads == ["SWAG pool: BN pass 0/25 images done", "SWAG pool: BN pass 10/25 images done",
                     "SWAG pool: BN pass 20/25 images done"]  # read while each batch is in hand
    assert ACTIVITY.text() is None
    assert [ACTIVITY.text() for _ in tracked(ctx, batches, "plain", "train")] == [None] * 3  # no activity asked
