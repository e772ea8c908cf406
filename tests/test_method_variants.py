"""A run with non-default method options (a deviation from the reference) gets its own, labelled table row.

Its run folder is named by method only, so without the row key a cRT run with ``backbone=finetune`` would sit in the
reference cRT row and be averaged with it.
"""
from __future__ import annotations

import hashlib
import json

import pytest

from ltbench.registry import get_method
from ltbench.report.site import build_site
from ltbench.report.stats import run_label
from ltbench.report.tables import (aggregate, collect_runs, method_key, method_label, render_latex,
                                   render_markdown, split_method_key)
from report_fixtures import make_run

CRT_OLD = {"balanced": True, "extractor_bn": "train", "features": "augmented"}  # a config.json from before 'backbone'


def _stored(options: dict) -> dict:
    return json.loads(json.dumps(options))  # as config.json holds it (tuples become lists)


def test_key_of_default_legacy_and_changed_options():
    crt_defaults = _stored(get_method("crt").defaults)
    assert method_key({"method": "crt", "method_options": crt_defaults}) == "crt"
    assert method_key({"method": "crt", "method_options": CRT_OLD}) == "crt"  # missing option: its legacy value
    assert method_key({"method": "crt", "method_options": {**CRT_OLD, "backbone": "frozen"}}) == "crt"
    assert method_key({"method": "crt", "method_options": {**CRT_OLD, "backbone": "finetune"}}) == \
        "crt[backbone=finetune]"
    assert method_key({"method": "crt", "method_options": {**CRT_OLD, "features": "cached", "balanced": False}}) == \
        "crt[balanced=false,features=cached]"
    # tau-norm's defaults (a float grid among them) as config.json holds them: still the default row
    tau_defaults = _stored(get_method("tau_norm").defaults)
    assert method_key({"method": "tau_norm", "method_options": tau_defaults}) == "tau_norm"
    # values are typed by the declaration first: a string "false" is the default false, "1" the default 1.0
    assert method_key({"method": "tau_norm", "method_options": {**tau_defaults, "keep_bias": "false",
                                                                "tau": "1"}}) == "tau_norm"
    assert method_key({"method": "tau_norm", "method_options": {**tau_defaults, "keep_bias": "true"}}) == \
        "tau_norm[keep_bias=true]"
    assert method_key({"method": "ce", "method_options": {}}) == "ce"
    assert split_method_key("crt[backbone=finetune]") == ("crt", "backbone=finetune")
    assert split_method_key("crt") == ("crt", "")
    assert method_label("crt[backbone=finetune]") == "cRT [backbone=finetune]"
    assert run_label("sgd-crt[backbone=finetune]") == "SGD + cRT [backbone=finetune]"


@pytest.fixture
def store(tmp_path):
    _, m_ref0 = make_run(tmp_path, "crt", "sgd", 0, 0.62, config_extra={"method_options": CRT_OLD})
    _, m_ref1 = make_run(tmp_path, "crt", "sgd", 1, 0.60,
                         config_extra={"method_options": {**CRT_OLD, "backbone": "frozen"}})
    _, m_fine = make_run(tmp_path, "crt", "sgd", 2, 0.40,
                         config_extra={"method_options": {**CRT_OLD, "backbone": "finetune"}})
    make_run(tmp_path, "ce", "sgd", 0, 0.45)
    return tmp_path, (m_ref0, m_ref1, m_fine)


def test_options_missing_from_older_configs_count_at_how_those_runs_behaved():
    """Configs written before an option existed: the value that reproduces those runs, not today's default (a run
    from before be5958f trained cRT on cached features, swept tau-norm with no degeneracy rule, and normalised
    SWAG's low-rank term by the snapshots kept)."""
    assert method_key({"method": "crt", "method_options": {"balanced": True}}) == "crt[features=cached]"
    assert method_key({"method": "lws", "method_options": {"balanced": True}}) == "lws[features=cached]"
    old_tau = {"holdout_fraction": 0.2, "keep_bias": False, "taus": [0.0, 1.0, 2.0]}
    assert method_key({"method": "tau_norm", "method_options": old_tau}) == \
        "tau_norm[taus=[0.0,1.0,2.0],min_spread=0.0,ceiling=101.0]"
    # a config from between the spread rule and the ceiling rule: only the ceiling is legacy
    between = {k: v for k, v in _stored(get_method("tau_norm").defaults).items() if k != "ceiling"}
    assert method_key({"method": "tau_norm", "method_options": between}) == "tau_norm[ceiling=101.0]"
    for m in ("swag", "srepr"):
        old = {k: v for k, v in _stored(get_method(m).defaults).items() if k != "lowrank_norm"}
        assert method_key({"method": m, "method_options": old}) == f"{m}[lowrank_norm=kept]"


def test_variant_is_its_own_row_and_not_averaged(store):
    root, (m_ref0, m_ref1, m_fine) = store
    agg = aggregate(collect_runs(root).runs).set_index("method")
    assert sorted(agg.index) == ["ce", "crt", "crt[backbone=finetune]"]
    assert agg.loc["crt", "n"] == 2 and agg.loc["crt[backbone=finetune]", "n"] == 1
    assert agg.loc["crt", "acc_mean"] == pytest.approx((m_ref0["acc"] + m_ref1["acc"]) / 2)
    assert agg.loc["crt[backbone=finetune]", "acc_mean"] == pytest.approx(m_fine["acc"])


def test_tables_and_site_label_the_variant(store):
    root, _ = store
    agg = aggregate(collect_runs(root).runs)
    md = render_markdown(agg)
    rows = [line for line in md.splitlines() if line.startswith("| SGD |")]
    assert [r.split(" | ")[1] for r in rows] == ["CE", "cRT", "cRT [backbone=finetune]"]  # variant after reference
    assert "cRT [backbone=finetune]" in render_latex(agg)
    build_site(root, replicates=20, echo=lambda s: None)
    # a plain file name plus a short hash of the key (two keys never share a page)
    name = f"sgd-crt_backbone_finetune-{hashlib.sha1(b'sgd-crt[backbone=finetune]').hexdigest()[:6]}.html"
    page = root / "site" / "cifar10-lt-if100" / name
    assert page.is_file() and "cRT [backbone=finetune]" in page.read_text()
    assert f'href="{name}"' in (root / "site" / "cifar10-lt-if100" / "index.html").read_text()
    assert (root / "site" / "cifar10-lt-if100" / "sgd-crt.html").is_file()  # plain keys keep their names


def test_variant_is_compared_with_its_methods_published_rows_under_its_own_label(store):
    import pandas as pd
    from ltbench.report.baselines import compare, render_compare_markdown
    root, (m_ref0, m_ref1, m_fine) = store
    pub = pd.DataFrame([{"dataset": "cifar10-lt", "imbalance": 100, "backbone": "resnet32", "method": "crt",
                         "stage1": "sgd", "epochs": 200, "acc": 50.0, "many": float("nan"), "medium": float("nan"),
                         "few": float("nan"),
                         "nll": float("nan"), "ece": float("nan"), "source": "somewhere", "note": ""}])
    cmp = compare(aggregate(collect_runs(root).runs), pub).set_index("method")
    assert sorted(cmp.index) == ["crt", "crt[backbone=finetune]"]
    assert cmp.loc["crt[backbone=finetune]", "d_acc"] == pytest.approx(m_fine["acc"] - 50.0)
    assert "SGD + cRT [backbone=finetune]" in render_compare_markdown(cmp.reset_index())


def test_stats_pair_with_the_reference_variant_a_store_holds_and_compare_takes_variant_keys(tmp_path):
    """A store whose cRT rows are all one variant (runs recorded before an option existed) still gets its
    comparisons against cRT: that variant is the store's reference row; `compare --paired` takes a variant's key."""
    from click.testing import CliRunner
    from bench import cli as bench_cli
    from ltbench.report import stats as S
    old_crt = {"method_options": {"balanced": True}}  # pre-be5958f: cached features
    make_run(tmp_path, "crt", "sgd", 0, 0.60, config_extra=old_crt)
    make_run(tmp_path, "crt", "swa", 0, 0.62, config_extra=old_crt)
    make_run(tmp_path, "srepr", "swa", 0, 0.64)
    make_run(tmp_path, "ce", "swa", 0, 0.50)
    got = {(c.a, c.b, c.kind) for c in S.all_comparisons(tmp_path, replicates=0)}
    assert got == {("swa-ce", "swa-crt[features=cached]", "reference"),
                   ("swa-srepr", "swa-crt[features=cached]", "reference"),
                   ("swa-crt[features=cached]", "sgd-crt[features=cached]", "extractor"),
                   ("swa-ce", "sgd-crt[features=cached]", "baseline"),
                   ("swa-srepr", "sgd-crt[features=cached]", "baseline")}
    # with a plain cRT row beside a variant, the plain row is the reference
    make_run(tmp_path, "crt", "swa", 1, 0.62)
    make_run(tmp_path, "ce", "swa", 1, 0.52)
    got = {(c.a, c.b) for c in S.all_comparisons(tmp_path, replicates=0) if c.kind == "reference"}
    assert ("swa-ce", "swa-crt") in got and ("swa-ce", "swa-crt[features=cached]") not in got
    r = CliRunner().invoke(bench_cli, ["compare", "--paired", "swa-crt[features=cached]", "swa-ce",
                                       "--results", str(tmp_path), "--bootstrap", "50"])
    assert r.exit_code == 0 and "paired over seeds 0 (n = 1)" in r.output, r.output
    assert "SWA + cRT [features=cached]" in r.output
