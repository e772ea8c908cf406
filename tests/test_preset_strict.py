"""A preset is checked as the user wrote it (issue 15): a wrong type in [stage1] / [stage2] names the user's key, not
an internal field; a method option in a preset must already have its declared type (TOML values are typed);
an unknown [methods.<name>] names the preset file. Each is one ``error:`` line, exit 2, before any training."""
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ltbench.config import PRESET_DIR, resolve
from ltbench.errors import LtbenchError

BASE = (PRESET_DIR / "cifar-tiny.toml").read_text()


def _preset(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _with_stage_value(table: str, key: str, value: str) -> str:
    """cifar-tiny.toml with ``key`` of ``[table]`` set to the TOML text ``value``."""
    head, sep, rest = BASE.partition(f"[{table}]\n")
    assert sep, table
    rest, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", rest, count=1)
    assert n == 1, (table, key)
    return head + sep + rest


def _with_table(table: str, body: str) -> str:
    return BASE + f"\n[{table}]\n{body}\n"


def _resolve(preset: Path, method: str = "crt", **kw):
    return resolve(method, "cifar10-lt-tiny", None, "sgd", 0, str(preset), device="cpu", **kw)


# ----------------------------------------------------------- [stage1] / [stage2]: the key the user wrote


@pytest.mark.parametrize("value, shown", [('"30"', "'30' (str)"), ("30.5", "30.5 (float)"), ("true", "true")])
@pytest.mark.parametrize("override", [{}, {"epochs": 2}])
def test_stage1_epochs_wrong_type_names_user_key(tmp_path, value, shown, override):
    preset = _preset(tmp_path, _with_stage_value("stage1", "epochs", value))
    with pytest.raises(LtbenchError) as e:
        _resolve(preset, **override)
    msg = str(e.value)
    assert f"preset {preset} [stage1] epochs must be an integer, got" in msg and shown in msg
    assert "preset_epochs" not in msg and "protocol_epochs" not in msg and "int | None" not in msg


@pytest.mark.parametrize("override", [{}, {"stage2_epochs": 1}])
def test_stage2_epochs_wrong_type_names_user_key(tmp_path, override):
    preset = _preset(tmp_path, _with_stage_value("stage2", "epochs", '"5"'))
    with pytest.raises(LtbenchError) as e:
        _resolve(preset, **override)
    msg = str(e.value)
    assert f"preset {preset} [stage2] epochs must be an integer, got '5' (str)" in msg
    assert "protocol_epochs" not in msg


def test_stage1_zero_epochs_is_an_error_with_epochs_override(tmp_path):
    """The preset's epochs become the schedule's base (preset_epochs) under --epochs: 0 must not divide."""
    preset = _preset(tmp_path, _with_stage_value("stage1", "epochs", "0"))
    with pytest.raises(LtbenchError, match=r"\[stage1\] epochs must be at least 1, got 0"):
        _resolve(preset, epochs=2)


def test_stage1_float_field_type_in_user_words(tmp_path):
    preset = _preset(tmp_path, _with_stage_value("stage1", "lr", '"0.05"'))
    with pytest.raises(LtbenchError, match=r"\[stage1\] lr must be a number, got '0.05' \(str\)"):
        _resolve(preset)


def test_builtin_preset_by_name_still_resolves():
    cfg = resolve("crt", "cifar10-lt-tiny", None, "swa", 0, "cifar-tiny", epochs=3, device="cpu")
    assert cfg.stage1.epochs == 3 and cfg.stage1.preset_epochs == 30 and cfg.stage1.protocol_epochs == 200


# ----------------------------------------------------------- [methods.<name>]: values of the declared type


@pytest.mark.parametrize("body, key, expected, shown", [
    ('balanced = "False"', "balanced", "a boolean", "'False' (str)"),
    ("balanced = 0", "balanced", "a boolean", "0 (int)"),
    ("features = 3", "features", "a string", "3 (int)"),
])
def test_crt_option_of_wrong_type_is_an_error(tmp_path, body, key, expected, shown):
    preset = _preset(tmp_path, _with_table("methods.crt", body))
    with pytest.raises(LtbenchError) as e:
        _resolve(preset)
    msg = str(e.value)
    assert f"preset {preset} [methods.crt] {key} must be {expected}" in msg and shown in msg


@pytest.mark.parametrize("method, body, key, shown", [
    ("tau_norm", 'taus = "0.5,1.0"', "taus", "'0.5,1.0' (str)"),
    ("tau_norm", 'tau = "1.0"', "tau", "'1.0' (str)"),
    ("swag", "pool_size = 8.0", "pool_size", "8.0 (float)"),
    ("swag", 'pool_size = "8"', "pool_size", "'8' (str)"),
    ("swag", "diag_only = \"true\"", "diag_only", "'true' (str)"),
])
def test_other_method_tables_are_strict_too(tmp_path, method, body, key, shown):
    """Every [methods.*] table is checked, also one for a method other than the run's."""
    preset = _preset(tmp_path, _with_table(f"methods.{method}", body))
    with pytest.raises(LtbenchError) as e:
        _resolve(preset, method="ce")
    msg = str(e.value)
    assert f"preset {preset} [methods.{method}] {key} must be" in msg and shown in msg


def test_native_values_are_accepted(tmp_path):
    preset = _preset(tmp_path, _with_table("methods.crt", "balanced = false\nfeatures = \"cached\"")
                     + "\n[methods.tau_norm]\ntaus = [0, 0.5, 1]\ntau = 1\n"
                     + "\n[methods.swag]\npool_size = 4\nscale = 1\neval_samples = \"none\"\n")
    assert _resolve(preset).method_options == {"balanced": False, "features": "cached", "extractor_bn": "train",
                                                 "backbone": "frozen"}
    tau = _resolve(preset, method="tau_norm").method_options
    assert tau["taus"] == [0.0, 0.5, 1.0] and tau["tau"] == 1.0
    swag = resolve("swag", "cifar10-lt-tiny", None, "swa", 0, str(preset), device="cpu").method_options
    assert swag["pool_size"] == 4 and swag["scale"] == 1.0 and swag["eval_samples"] is None


def test_cli_option_strings_are_still_converted(tmp_path):
    """--option KEY=VALUE gets text: it keeps converting (strictness is for preset values only)."""
    preset = _preset(tmp_path, BASE)
    assert _resolve(preset, method_options={"balanced": "False"}).method_options["balanced"] is False
    assert _resolve(preset, method_options={"balanced": "true"}).method_options["balanced"] is True


def test_unknown_method_table_names_the_preset_file(tmp_path):
    preset = _preset(tmp_path, _with_table("methods.nosuch", "x = 1"))
    with pytest.raises(LtbenchError) as e:
        _resolve(preset)
    msg = str(e.value)
    assert str(preset) in msg and "[methods.nosuch]" in msg and "unknown method 'nosuch'" in msg
    assert "crt" in msg  # the valid methods are listed


# ----------------------------------------------------------- the CLI: one error line, exit 2, no training


@pytest.mark.parametrize("text, expected", [
    (_with_stage_value("stage1", "epochs", '"30"'), "[stage1] epochs must be an integer, got '30' (str)"),
    (_with_table("methods.crt", 'balanced = "False"'), "[methods.crt] balanced must be a boolean"),
    (_with_table("methods.nosuch", "x = 1"), "[methods.nosuch] names an unknown method 'nosuch'"),
])
@pytest.mark.parametrize("extra", [[], ["--epochs", "2"]])
def test_cli_fails_before_training(tmp_path, monkeypatch, text, expected, extra):
    from bench import cli
    import ltbench.runner

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("LTBENCH_CACHE", str(cache))

    def no_training(*a, **k):
        raise AssertionError("training started")
    monkeypatch.setattr(ltbench.runner, "execute", no_training)
    preset = _preset(tmp_path, text)
    results = tmp_path / "res"
    res = CliRunner().invoke(cli, ["run", "--method", "crt", "--dataset", "cifar10-lt-tiny", "--preset", str(preset),
                                   "--results", str(results), *extra])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: preset ") and str(preset) in lines[0] and expected in lines[0]
    assert not (results / "runs").exists()
    assert not any(cache.iterdir())
