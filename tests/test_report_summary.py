"""The table printed after `bench.py run`: columns never run together, whatever the values."""
from __future__ import annotations

import json
import re

from ltbench.report.summary import COLUMNS, print_run_table, run_table_lines
from report_fixtures import make_run

EXTREME = {"acc": 100.0, "acc_many": 7.5, "acc_medium": None, "acc_few": 0.0, "nll": 1297.37, "ece": 82.01,
           "brier": 12345.678}


def _runs(tmp_path):
    d1, m1 = make_run(tmp_path, "ce", "sgd", 0, 0.5)
    d2, _ = make_run(tmp_path, "crt", "swa", 1, 0.5, reduced=True)
    m = json.loads((d2 / "metrics.json").read_text())
    m.update(EXTREME)
    (d2 / "metrics.json").write_text(json.dumps(m))
    return [d1, d2], m1


def test_extreme_values_keep_columns_apart(tmp_path):
    dirs, m1 = _runs(tmp_path)
    head, rule, *rows = run_table_lines(dirs)
    names = ["run"] + [n for _, n, in COLUMNS]
    assert head.split() == names
    for row in rows:
        cells = re.split(r" {2,}", row.strip())  # columns are separated by at least two spaces
        assert len(cells) == len(names), row
    wide = re.split(r" {2,}", rows[1].strip())
    assert wide[1:] == ["100.00", "7.50", "-", "0.00", "1297.370", "82.01", "12345.678"]
    assert wide[0].endswith(" *")  # reduced marker
    first = re.split(r" {2,}", rows[0].strip())
    assert float(first[1]) == round(m1["acc"], 2) and float(first[5]) == round(m1["nll"], 3)
    # right-aligned: every number ends where its header ends
    for j, name in enumerate(names[1:], start=1):
        end = head.index(name) + len(name) if j < len(names) - 1 else len(head)
        for row in rows:
            assert row[:end].split()[-1] == re.split(r" {2,}", row.strip())[j]
    assert len(rule) == len(head) and set(rule) == {"-"}


def test_printed(tmp_path, capsys):
    dirs, _ = _runs(tmp_path)
    print_run_table(dirs)
    out = capsys.readouterr().out
    assert re.search(r"1297\.370 {2,}82\.01", out)
    assert "7.501297" not in out and f"bench.py table --results {tmp_path}" in out
