"""Tables: aggregation against numpy on synthetic run folders, bold = best, reduced marker, audit exclusion,
CLI errors, and the LaTeX compiled by a real engine (standalone and \\input)."""
from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ltbench.report.tables import collect_runs, aggregate, render_latex, render_markdown
from report_fixtures import build_results


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("results")
    return root, build_results(root)


@pytest.fixture(scope="module")
def cli():
    import bench
    return bench.cli


def expected(root: Path) -> dict[tuple[str, str, str], dict]:
    """Per setting, straight from predictions.npz with numpy (not via ltbench): acc per seed, mean, std."""
    out: dict = {}
    for npz in sorted(root.glob("runs/*/*/seed*/predictions.npz")):
        tag, setting, seed = npz.parts[-4], npz.parts[-3], npz.parts[-2]
        with np.load(npz) as z:
            acc = 100 * np.mean(z["pred"] == z["labels"])
        out.setdefault((tag, *setting.split("-", 1)), {})[seed] = acc
    return out


def test_aggregate_matches_numpy(results):
    root, special = results
    col = collect_runs(root)
    agg = aggregate(col.runs).set_index(["dataset_tag", "stage1_mode", "method"])
    exp = expected(root)
    # the tampered run and the reduced seed of a full setting never reach the table
    del exp[("cifar10-lt-if100", "sgd", "tau_norm")]
    del exp[("cifar100-lt-if50", "sgd", "lws")]["seed1"]
    assert set(agg.index) == set(exp)
    for key, seeds in exp.items():
        v = np.array(list(seeds.values()))
        row = agg.loc[key]
        assert row["n"] == len(v)
        assert row["acc_mean"] == pytest.approx(v.mean(), abs=1e-9)
        if len(v) >= 2:
            assert row["acc_std"] == pytest.approx(np.std(v, ddof=1), abs=1e-9)
        else:
            assert math.isnan(row["acc_std"])
    # a metric other than acc: ECE mean equals the numpy mean of the stored metrics.json values
    eces = [float(pd.read_json(d / "metrics.json", typ="series")["ece"])
            for d in sorted((root / "runs/cifar10-lt-if100/sgd-crt").glob("seed*"))]
    assert agg.loc[("cifar10-lt-if100", "sgd", "crt"), "ece_mean"] == pytest.approx(np.mean(eces))
    assert agg.loc[("cifar10-lt-if100", "sgd", "crt"), "ece_std"] == pytest.approx(np.std(eces, ddof=1))


def test_failing_run_is_excluded_and_reported(results, cli):
    root, special = results
    col = collect_runs(root)
    assert [d for d, _ in col.excluded] == [special["bad"]]
    assert any("acc" in p for p in col.excluded[0][1])
    assert col.dropped_reduced == [special["dropped_reduced"]]
    res = CliRunner().invoke(cli, ["table", "--results", str(root), "--format", "markdown"])
    assert res.exit_code == 0, res.output
    assert f"excluded {special['bad']}" in res.stderr
    assert "tau-norm" not in res.stdout


def _md_rows(md: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    return head, rows


def test_bold_marks_the_true_best(results):
    root, _ = results
    agg = aggregate(collect_runs(root).runs)
    head, rows = _md_rows(render_markdown(agg))
    exp = expected(root)
    for tag in ("cifar10-lt-if100", "cifar100-lt-if50"):
        means = {k[1:]: np.mean(list(v.values())) for k, v in exp.items()
                 if k[0] == tag and k != ("cifar10-lt-if100", "sgd", "tau_norm")}
        if tag == "cifar100-lt-if50":
            means[("sgd", "lws")] = exp[(tag, "sgd", "lws")]["seed0"]
        best = max(means, key=means.get)
        col = head.index(f"{tag} acc")
        bold = [(r[0], r[1]) for r in rows if r[col].startswith("**")]
        names = {"sgd": "SGD", "swa": "SWA", "ce": "CE", "crt": "cRT", "lws": "LWS"}
        assert bold == [(names[best[0]], names[best[1]])]
    # lower is better for ECE: the bold ECE is the smallest mean
    ece_col = head.index("cifar10-lt-if100 ECE")
    vals = {(r[0], r[1]): float(r[ece_col].strip("*").split("±")[0]) for r in rows if r[ece_col]}
    bold = [(r[0], r[1]) for r in rows if r[ece_col].startswith("**")]
    assert bold == [min(vals, key=vals.get)]


def test_reduced_marker_and_single_seed(results):
    root, _ = results
    agg = aggregate(collect_runs(root).runs)
    md = render_markdown(agg)
    head, rows = _md_rows(md)
    n_col = head.index("cifar100-lt-if50 n")
    by = {(r[0], r[1]): r for r in rows}
    assert by[("SWA", "LWS")][n_col] == "2 †"
    assert by[("SGD", "LWS")][n_col] == "1"  # reduced seed dropped, full seed kept, no marker
    assert "† reduced schedule" in md
    one = by[("SWA", "cRT")][head.index("cifar10-lt-if100 acc")]
    assert "±" not in one and re.fullmatch(r"\**\d+\.\d\d\**", one)
    tex = render_latex(agg)
    assert r"2$^\dagger$" in tex and r"\toprule" in tex and r"\bottomrule" in tex


def test_csv_from_cli(results, cli):
    root, _ = results
    res = CliRunner().invoke(cli, ["table", "--results", str(root), "--format", "csv", "--dataset", "cifar10-lt"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(io.StringIO(res.stdout))
    assert set(df.dataset_tag) == {"cifar10-lt-if100"}
    exp = expected(root)
    row = df[(df.stage1_mode == "sgd") & (df.method == "ce")].iloc[0]
    v = np.array(list(exp[("cifar10-lt-if100", "sgd", "ce")].values()))
    assert row.n == 3 and row.acc_mean == pytest.approx(v.mean(), rel=1e-5)
    assert row.acc_std == pytest.approx(np.std(v, ddof=1), rel=1e-5)


def test_cli_errors(tmp_path, cli, results):
    res = CliRunner().invoke(cli, ["table", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "error: no sound runs found" in res.stderr
    res = CliRunner().invoke(cli, ["table", "--results", str(results[0]), "--format", "html"])
    assert res.exit_code == 2 and "unknown --format 'html'" in res.stderr


def _engine() -> list[str] | None:
    if shutil.which("pdflatex"):
        return ["pdflatex", "-interaction=nonstopmode", "-halt-on-error"]
    if shutil.which("tectonic"):
        return ["tectonic", "--chatter", "minimal"]
    return None


@pytest.mark.parametrize("mode", ["standalone", "input", "input+graphicx"])
def test_latex_compiles(results, tmp_path, mode):
    engine = _engine()
    if engine is None:
        pytest.skip("no LaTeX engine: neither pdflatex nor tectonic is on PATH "
                    "(apt-get install texlive-latex-base texlive-latex-recommended)")
    root, _ = results
    (tmp_path / "table.tex").write_text(render_latex(aggregate(collect_runs(root).runs)))
    main = "table.tex"
    if mode != "standalone":
        pkgs = r"\usepackage{booktabs}" + (r"\usepackage{graphicx}" if "graphicx" in mode else "")
        (tmp_path / "paper.tex").write_text(
            rf"\documentclass{{article}}{pkgs}" "\n" r"\begin{document}" "\n" r"\section{Results}"
            "\nAs Table~\\ref{tab:ltbench} shows.\n" r"\input{table}" "\n" r"\input{table}" "\n" r"\end{document}" "\n")
        main = "paper.tex"
    proc = subprocess.run(engine + [main], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    pdf = tmp_path / main.replace(".tex", ".pdf")
    assert pdf.is_file() and pdf.read_bytes()[:5] == b"%PDF-"


def test_the_footnote_says_how_tau_was_chosen_and_which_taus_the_runs_used(tmp_path):
    """Old: a tau-norm row said nothing of where its tau came from (held-out, degenerate sweep, or test set)."""
    from report_fixtures import make_run
    from ltbench.report.tables import _footnote
    res = tmp_path / "results"
    make_run(res, "ce", "sgd", 0, 0.5)
    plain = _footnote(aggregate(collect_runs(res).runs))
    assert "tau" not in plain                      # no tau-norm row, no tau note
    infos = {("sgd", 0): {"tau": 0.7, "tau_selection": "holdout"},
             ("sgd", 1): {"tau": 1.0, "tau_selection": "fixed: held-out sweep degenerate (spread 0.00 < 0.5 points)"},
             ("swa", 0): {"tau": 1.0, "tau_selection": "fixed: held-out sweep degenerate (best 100.00 >= ceiling)"}}
    for (s1, seed), info in infos.items():
        make_run(res, "tau_norm", s1, seed, 0.5, config_extra={"method_info": info})
    make_run(res, "tau_norm_oracle", "sgd", 0, 0.5, config_extra={"method_info": {"tau": 1.2, "oracle": True}})
    runs = collect_runs(res).runs
    got = runs.set_index(["method", "stage1_mode", "seed"])[["tau", "tau_rule"]]
    assert got.loc[("tau_norm", "sgd", 0)].tolist() == [0.7, "held-out"]
    assert got.loc[("tau_norm", "swa", 0)].tolist() == [1.0, "degenerate"]
    assert got.loc[("tau_norm_oracle", "sgd", 0)].tolist() == [1.2, "oracle"]
    assert got.loc[("ce", "sgd", 0), "tau_rule"] == ""
    oracle_only = _footnote(aggregate(runs[runs.method != "tau_norm"]))
    assert "tau-norm (oracle) takes" in oracle_only and "chosen without test labels" not in oracle_only
    foot = _footnote(aggregate(runs))
    assert "chosen on held-out training images: tau 0.7 in 1 run," in foot
    assert "held-out sweep degenerate, fixed tau: tau 1 in 2 runs" in foot
    assert "oracle (test set): tau 1.2 in 1 run." in foot
    # a run recorded before tau_selection existed, with its held-out sweep: held-out, not 'not recorded'
    make_run(res, "tau_norm", "swa", 1, 0.5, config_extra={"method_info": {"tau": 0.6, "heldout_size": 9}})
    assert tau_choice_of(collect_runs(res).runs, "swa", 1) == (0.6, "held-out")


def test_the_compare_footnote_says_how_our_tau_was_chosen(tmp_path):
    """Published tau-norm rows are set beside ours in compare: its footnote must say where our tau came from."""
    from report_fixtures import make_run
    from ltbench.report.baselines import compare, render_compare_csv, render_compare_markdown
    res = tmp_path / "results"
    make_run(res, "tau_norm", "sgd", 0, 0.5, dataset="cifar100-lt", counts=[500, 50, 5],
             config_extra={"method_info": {"tau": 1.0, "tau_selection": "fixed: held-out sweep degenerate (x)"}})
    agg = aggregate(collect_runs(res).runs)
    pub = pd.DataFrame([{"dataset": "cifar100-lt", "imbalance": 100, "method": "tau_norm", "backbone": "resnet32",
                         "stage1": "sgd", "epochs": 200, "source": "s", "note": "", "acc": 40.0, "many": math.nan,
                         "medium": math.nan, "few": math.nan, "nll": math.nan, "ece": math.nan}] * 2)
    cmp = compare(agg, pub)
    md = render_compare_markdown(cmp)
    assert "Tau-norm: tau chosen without test labels" in md
    assert "held-out sweep degenerate, fixed tau: tau 1 in 1 run." in md   # one setting, counted once
    assert "tau_choices" not in render_compare_csv(cmp)


def tau_choice_of(runs, stage1: str, seed: int):
    r = runs[(runs.method == "tau_norm") & (runs.stage1_mode == stage1) & (runs.seed == seed)].iloc[0]
    return float(r.tau), r.tau_rule
