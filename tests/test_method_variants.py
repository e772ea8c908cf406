"""A run with non-default method options (a deviation from the reference) gets its own, labelled table row.

Its run folder is named by method only, so without the row key a cRT run with ``backbone=finetune`` would sit in the
reference cRT row and be averaged with it.
"""
from __future__ import annotations

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
    # tau-norm stores a tuple default (the tau grid) as a JSON list: still the default row
    assert method_key({"method": "tau_norm", "method_options": _stored(get_method("tau_norm").defaults)}) == "tau_norm"
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
    page = root / "site" / "cifar10-lt-if100" / "sgd-crt_backbone_finetune.html"
    assert page.is_file() and "cRT [backbone=finetune]" in page.read_text()
    assert 'href="sgd-crt_backbone_finetune.html"' in (root / "site" / "cifar10-lt-if100" / "index.html").read_text()


def test_variant_is_compared_with_its_methods_published_rows_under_its_own_label(store):
    import pandas as pd
    from ltbench.report.baselines import compare, render_compare_markdown
    root, (m_ref0, m_ref1, m_fine) = store
    pub = pd.DataFrame([{"dataset": "cifar10-lt", "imbalance": 100, "backbone": "resnet32", "method": "crt",
                         "stage1": "sgd", "epochs": 200, "acc": 50.0, "many": float("nan"), "medium": float("nan"), "few": float("nan"),
                         "nll": float("nan"), "ece": float("nan"), "source": "somewhere", "note": ""}])
    cmp = compare(aggregate(collect_runs(root).runs), pub).set_index("method")
    assert sorted(cmp.index) == ["crt", "crt[backbone=finetune]"]
    assert cmp.loc["crt[backbone=finetune]", "d_acc"] == pytest.approx(m_fine["acc"] - 50.0)
    assert "SGD + cRT [backbone=finetune]" in render_compare_markdown(cmp.reset_index())
