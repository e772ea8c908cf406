"""results/baselines.csv: every number has a source; bad files fail loudly; compare() differences are right."""
from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest
from click.testing import CliRunner

from ltbench.errors import LtbenchError
from ltbench.report.baselines import COLUMNS, compare, default_baselines_path, load_baselines
from ltbench.report.tables import aggregate, collect_runs
from report_fixtures import build_results, make_run


def test_shipped_baselines_are_sourced_and_cover_the_benchmarks():
    b = load_baselines()
    assert (b.source.str.strip() != "").all()
    assert set(b.dataset) == {"cifar10-lt", "cifar100-lt", "imagenet-lt", "inat2018"}
    for m in ("ce", "crt", "lws", "tau_norm", "mislas"):
        assert m in set(b.method), m
    for c in ("acc", "many", "medium", "few", "ece"):
        v = b[c].dropna()
        assert ((v >= 0) & (v <= 100)).all()
    # spot checks against the cited files (see docs/anchors.md section 2)
    row = b[(b.dataset == "imagenet-lt") & (b.method == "crt") & (b.backbone == "resnext50")].iloc[0]
    assert (row.acc, row.many, row.medium, row.few) == (49.6, 61.8, 46.2, 27.4)
    row = b[(b.dataset == "cifar100-lt") & (b.imbalance == 100) & (b.method == "mislas")].iloc[0]
    assert (row.acc, row.ece) == (47.0, 4.83)


def _write(tmp_path, rows):
    p = tmp_path / "b.csv"
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(p, index=False)
    return p


def _row(**kw):
    r = dict.fromkeys(COLUMNS, "")
    r.update(dataset="cifar10-lt", imbalance=100, backbone="resnet32", method="crt", acc=74.99, source="paper T1")
    r.update(kw)
    return r


@pytest.mark.parametrize("bad, msg", [
    ({"source": ""}, "has no source"),
    ({"acc": "high"}, "not a number"),
    ({"acc": 174.0}, "outside [0, 100]"),
    ({"dataset": "mnist-lt"}, "unknown dataset"),
    ({"acc": ""}, "no number"),
])
def test_bad_rows_are_rejected_with_their_line(tmp_path, bad, msg):
    p = _write(tmp_path, [_row(), _row(**bad)])
    with pytest.raises(LtbenchError) as e:
        load_baselines(p)
    assert msg in str(e.value) and f"{p}:3" in str(e.value)


def test_missing_column(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text("dataset,method,acc\ncifar10-lt,ce,70\n")
    with pytest.raises(LtbenchError, match="missing column"):
        load_baselines(p)


def test_compare_differences(tmp_path):
    for s in range(2):
        make_run(tmp_path, "crt", "sgd", s, 0.6)
    make_run(tmp_path, "ce", "sgd", 0, 0.5, dataset="cifar10-lt-tiny", imbalance=None)
    agg = aggregate(collect_runs(tmp_path).runs)
    p = _write(tmp_path, [_row(), _row(imbalance=50, acc=80.17), _row(method="lws", acc=72.63)])
    cmp = compare(agg, load_baselines(p))
    assert len(cmp) == 1  # only the same dataset, imbalance factor and method
    accs = [float(pd.read_json(d / "metrics.json", typ="series")["acc"])
            for d in sorted((tmp_path / "runs/cifar10-lt-if100/sgd-crt").glob("seed*"))]
    assert cmp.iloc[0].d_acc == pytest.approx(sum(accs) / 2 - 74.99)
    assert math.isnan(cmp.iloc[0].d_many)  # the published row has no many-shot number


def test_compare_cli(tmp_path):
    import bench
    build_results(tmp_path)
    shutil.copy(default_baselines_path(), tmp_path / "baselines.csv")
    out = tmp_path / "cmp.md"
    res = CliRunner().invoke(bench.cli, ["compare", "--results", str(tmp_path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout == "" and f"wrote {out}" in res.stderr  # as `table -o`: the file, not stdout
    assert "SGD + CE" in out.read_text() and "70.36" in out.read_text()
    shown = CliRunner().invoke(bench.cli, ["compare", "--results", str(tmp_path)])
    assert shown.exit_code == 0 and shown.stdout == out.read_text()
    csv = CliRunner().invoke(bench.cli, ["compare", "--results", str(tmp_path), "--format", "csv"])
    assert csv.exit_code == 0 and csv.stdout.startswith("dataset_tag,") and "| " not in csv.stdout
    res = CliRunner().invoke(bench.cli, ["compare", "--results", str(tmp_path), "--dataset", "cifar100-lt-if50",
                                         "--baselines", str(_write(tmp_path, [_row()]))])
    assert res.exit_code == 2 and "no published number matches" in res.stderr


@pytest.mark.parametrize("written, options, key", [
    ("crt[backbone=finetune]", {"backbone": "finetune"}, "crt[backbone=finetune]"),
    ("tau_norm[selection=fixed, keep_bias=True]", {"keep_bias": True, "selection": "fixed"},
     "tau_norm[keep_bias=true,selection=fixed]"),  # declared order, typed
    ("crt[backbone=frozen]", {"backbone": "frozen"}, "crt"),  # the default is the reference: no variant
    ("tau_norm[taus=0,0.5,1]", {"taus": [0.0, 0.5, 1.0]}, "tau_norm[taus=[0.0,0.5,1.0]]"),  # a list keeps its commas
    ("tau_norm[taus=[0.0,0.5,1.0],keep_bias=true]", {"taus": [0.0, 0.5, 1.0], "keep_bias": True},
     "tau_norm[taus=[0.0,0.5,1.0],keep_bias=true]"),  # the key as the tables write it reads back as itself
])
def test_published_options_name_the_row_as_a_run_of_them_would_be_named(tmp_path, written, options, key):
    """A published row's options give the key the tables give a run recorded with those options."""
    from ltbench.registry import get_method
    from ltbench.report.tables import method_key
    b = load_baselines(_write(tmp_path, [_row(method=written)]))
    assert b.method.tolist() == [key]
    base = written.partition("[")[0]
    assert method_key({"method": base, "method_options": {**get_method(base).defaults, **options}}) == key


@pytest.mark.parametrize("written, msg", [
    ("crt[bogus=1]", "unknown option(s) bogus"),
    ("crt[backbone=sideways]", "backbone"),
    ("ride[experts=3]", "options are only for a registered method"),
    ("crt[backbone=finetune", "method[key=value,...]"),
    ("crt[finetune]", "is not key=value"),
    ("crt[backbone=finetune,backbone=frozen]", "option backbone is given twice"),
])
def test_bad_published_options_are_rejected_with_their_line(tmp_path, written, msg):
    p = _write(tmp_path, [_row(), _row(method=written)])
    with pytest.raises(LtbenchError) as e:
        load_baselines(p)
    assert msg in str(e.value) and f"{p}:3" in str(e.value)


def test_an_unquoted_comma_in_a_method_is_named_as_such(tmp_path):
    p = tmp_path / "b.csv"
    p.write_text(",".join(COLUMNS) + "\n"
                 + "cifar10-lt,100,resnet32,tau_norm[keep_bias=true,selection=fixed],sgd,,72.7,,,,,,,src,note\n")
    with pytest.raises(LtbenchError, match=r"b.csv:2: more fields than the header's 15; .* must be in double quotes"):
        load_baselines(p)


def test_a_published_row_under_other_options_is_shown_marked_not_as_the_same_method(tmp_path):
    from ltbench.report.baselines import render_compare_markdown
    make_run(tmp_path, "crt", "sgd", 0, 0.6)
    agg = aggregate(collect_runs(tmp_path).runs)
    p = _write(tmp_path, [_row(method="crt[backbone=finetune]", acc=70.0), _row(acc=74.99, source="paper T2")])
    cmp = compare(agg, load_baselines(p)).set_index("pub_method")
    assert sorted(cmp.index) == ["crt", "crt[backbone=finetune]"]  # both shown, only one is the same method
    assert cmp.loc["crt[backbone=finetune]", "options_differ"] and not cmp.loc["crt", "options_differ"]
    acc = float(pd.read_json(tmp_path / "runs/cifar10-lt-if100/sgd-crt/seed0/metrics.json", typ="series")["acc"])
    assert cmp.loc["crt[backbone=finetune]", "d_acc"] == pytest.approx(acc - 70.0)
    md = render_compare_markdown(cmp.reset_index()).splitlines()
    marked = [ln for ln in md if "options backbone=finetune" in ln]
    plain = [ln for ln in md if "paper T2" in ln]
    assert len(marked) == 1 and "SGD + cRT §" in marked[0]
    assert len(plain) == 1 and "§" not in plain[0]
    assert any(ln.startswith("Δ = ours") and "§ = the published run used other method options" in ln for ln in md)


def test_shipped_bagoftricks_classifier_balancing_rows_name_their_regime():
    """BagofTricks-LT's cRT / LWS configs re-train the backbone and its tau-norm fixes tau = 1 with the FC bias
    (configs/cao_cifar/two_stage/classifier_balance/*, read in docs/stage2-measurements.md): its rows say so."""
    b = load_baselines()
    bot = b[b.source.str.contains("Classifier-balancing table")]
    assert len(bot) == 12
    assert sorted(set(bot.method)) == ["crt[backbone=finetune]", "lws[backbone=finetune]",
                                       "tau_norm[keep_bias=true,selection=fixed]"]
    row = bot[(bot.dataset == "cifar100-lt") & (bot.imbalance == 100) & bot.method.str.startswith("crt")].iloc[0]
    assert row.acc == 40.26
