"""Paired statistics against an independent computation: per-seed differences with pandas + scipy, the paired
bootstrap re-done replicate by replicate with plain numpy indexing on the same arrays and the same index stream."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench import cli as bench_cli
from ltbench.metrics import ece as ltb_ece
from ltbench.report import stats as S
from ltbench.report.findings import decimal_tokens, unprinted_numbers
from ltbench.report.tables import collect_runs
from report_fixtures import COMMITTED_STORES, STORE_IDS, make_run

scipy_stats = pytest.importorskip("scipy.stats", reason="scipy (dev extra) computes the reference t quantiles")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    """3 seeds of SGD/SWA x CE/cRT, a 2-seed LWS on SWA only, a tau-norm of another seed (synthetic, audited)."""
    for s in range(3):
        for stage1, method, acc in [("sgd", "ce", 0.45), ("sgd", "crt", 0.60), ("swa", "ce", 0.5),
                                    ("swa", "crt", 0.62)]:
            make_run(tmp_path, method, stage1, s, acc + 0.02 * s)
    for s in range(2):
        make_run(tmp_path, "lws", "swa", s, 0.58)
    make_run(tmp_path, "tau_norm", "sgd", 5, 0.5)  # shares no seed with anything
    return tmp_path


def _ece_independent(conf: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """15 equal-width bins closed on the right, 100 * sum |B|/N |acc - conf| (written without ltbench)."""
    conf = conf.astype(np.float64)
    b = np.ceil(conf * bins).astype(int) - 1  # (l, u]: a confidence exactly on k/15 goes to bin k-1
    on_edge = np.isclose(conf * bins, np.round(conf * bins), rtol=0, atol=0)
    b = np.where(on_edge, np.round(conf * bins).astype(int) - 1, b)
    total = 0.0
    for k in range(bins):
        sel = b == k
        if sel.any():
            total += sel.sum() / len(conf) * abs(correct[sel].mean() - conf[sel].mean())
    return 100.0 * total


def _load(d: str) -> dict:
    with np.load(Path(d) / "predictions.npz") as z:
        return {k: z[k] for k in z.files}


def test_t_quantile_matches_scipy():
    for df in list(range(1, 31)) + [50, 120]:
        assert S.t_quantile(0.975, df) == pytest.approx(scipy_stats.t.ppf(0.975, df), rel=1e-10), df
        assert S.t_quantile(0.9, df) == pytest.approx(scipy_stats.t.ppf(0.9, df), rel=1e-10), df


def test_seed_statistics_match_pandas_and_scipy(store):
    runs = collect_runs(store).runs
    c = S.paired(runs, "cifar10-lt-if100", "swa-crt", "sgd-crt", replicates=0)
    assert c.seeds == [0, 1, 2]
    # independent: metrics.json of each seed, read by pandas
    rows = []
    for s in range(3):
        for name in ("swa-crt", "sgd-crt"):
            m = pd.read_json(store / "runs" / "cifar10-lt-if100" / name / f"seed{s}" / "metrics.json", typ="series")
            rows.append({"seed": s, "name": name, **m.to_dict()})
    df = pd.DataFrame(rows).pivot(index="seed", columns="name")
    for m in ("acc", "acc_many", "nll", "ece", "brier"):
        d = df[m]["swa-crt"] - df[m]["sgd-crt"]
        st = c.seed_stats(m)
        assert st["mean"] == pytest.approx(d.mean(), abs=1e-12)
        assert st["std"] == pytest.approx(d.std(ddof=1), abs=1e-12)
        lo, hi = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(len(d)))
        assert (st["t_lo"], st["t_hi"]) == pytest.approx((lo, hi), abs=1e-9)
        assert st["agree"] == int((np.sign(d) == np.sign(d.mean())).sum())
        assert st["a_mean"] == pytest.approx(df[m]["swa-crt"].mean())


def test_paired_bootstrap_matches_an_independent_replicate_loop(store):
    """Same arrays, same seeds: rng = default_rng([boot_seed, seed]), one integers(0, N, N) call per replicate."""
    runs = collect_runs(store).runs
    reps, boot_seed = 200, 7
    c = S.paired(runs, "cifar10-lt-if100", "swa-crt", "swa-ce", replicates=reps, boot_seed=boot_seed)
    sub = runs[runs.dataset_tag == "cifar10-lt-if100"]
    diffs = {m: np.zeros(reps) for m in ("acc", "nll", "ece")}
    for s in range(3):
        a = _load(sub[(sub.stage1_mode == "swa") & (sub.method == "crt") & (sub.seed == s)].dir.iloc[0])
        b = _load(sub[(sub.stage1_mode == "swa") & (sub.method == "ce") & (sub.seed == s)].dir.iloc[0])
        # the fixture ECE helper agrees with the library on the full arrays (so it is a fair reference)
        assert _ece_independent(a["confidence"], a["pred"] == a["labels"]) == pytest.approx(
            ltb_ece(a["confidence"], a["pred"] == a["labels"]), abs=1e-9)
        n = len(a["labels"])
        rng = np.random.default_rng([boot_seed, s])
        for r in range(reps):
            idx = rng.integers(0, n, size=n)
            for name, x in (("a", a), ("b", b)):
                sign = 1 if name == "a" else -1
                correct = x["pred"][idx] == x["labels"][idx]
                diffs["acc"][r] += sign * 100 * correct.mean() / 3
                diffs["nll"][r] += sign * -x["log_prob_true"][idx].astype(np.float64).mean() / 3
                diffs["ece"][r] += sign * _ece_independent(x["confidence"][idx], correct) / 3
    for m in ("acc", "nll", "ece"):
        want = (np.percentile(diffs[m], 2.5), np.percentile(diffs[m], 97.5))
        assert c.boot[m] == pytest.approx(want, abs=1e-9), m
    # the point estimate sits inside its bootstrap interval
    assert c.boot["acc"][0] <= c.seed_stats("acc")["mean"] <= c.boot["acc"][1]


def test_bootstrap_agrees_with_scipy_on_a_single_seed(store):
    """Statistical cross-check: scipy's paired percentile bootstrap of the accuracy difference (its own resampling)
    gives nearly the same interval as ours on one seed."""
    runs = collect_runs(store).runs
    sub = runs[(runs.dataset_tag == "cifar10-lt-if100") & (runs.seed == 0)]
    c = S.paired(sub, "cifar10-lt-if100", "swa-crt", "swa-ce", replicates=4000)
    a, b = (_load(sub[(sub.stage1_mode == "swa") & (sub.method == m)].dir.iloc[0]) for m in ("crt", "ce"))
    ca, cb = (x["pred"] == x["labels"] for x in (a, b))
    res = scipy_stats.bootstrap((ca.astype(float), cb.astype(float)), lambda x, y: 100 * (x.mean() - y.mean()),
                                paired=True, vectorized=False, n_resamples=4000, method="percentile",
                                random_state=np.random.default_rng(1))
    lo, hi = res.confidence_interval
    width = hi - lo
    assert c.boot["acc"][0] == pytest.approx(lo, abs=0.1 * width)
    assert c.boot["acc"][1] == pytest.approx(hi, abs=0.1 * width)


def test_setting_comparisons_pick_reference_and_extractor_pairs(store):
    comps = S.all_comparisons(store, replicates=0)
    got = [(c.a, c.b, c.kind, c.seeds) for c in comps]
    assert got == [("sgd-ce", "sgd-crt", "reference", [0, 1, 2]), ("swa-ce", "swa-crt", "reference", [0, 1, 2]),
                   ("swa-lws", "swa-crt", "reference", [0, 1]), ("swa-ce", "sgd-ce", "extractor", [0, 1, 2]),
                   ("swa-crt", "sgd-crt", "extractor", [0, 1, 2]), ("swa-lws", "sgd-crt", "baseline", [0, 1])]
    other = S.all_comparisons(store, reference="ce", replicates=0)
    assert ("swa-crt", "swa-ce", "reference", [0, 1, 2]) in [(c.a, c.b, c.kind, c.seeds) for c in other]


def test_compare_paired_cli(store):
    r = CliRunner().invoke(bench_cli, ["compare", "--paired", "swa-crt", "swa-ce", "--results", str(store),
                                       "--bootstrap", "100"])
    assert r.exit_code == 0, r.output
    c = S.paired(collect_runs(store).runs, "cifar10-lt-if100", "swa-crt", "swa-ce", replicates=100)
    line = next(x for x in r.output.splitlines() if x.startswith("acc "))
    assert S.row_cells(c, "acc")["diff"] in line and S.row_cells(c, "acc")["boot95"] in line
    assert "paired over seeds 0, 1, 2 (n = 3)" in r.output
    for args, needle in [(["swa-crt", "swa-crt"], "two different runs"), (["swa-crt", "sgd-nope"], "sgd-nope"),
                         (["sgd-tau_norm", "sgd-ce"], "common seed")]:
        r = CliRunner().invoke(bench_cli, ["compare", "--paired", *args, "--results", str(store)])
        assert r.exit_code == 2 and "error:" in r.output and needle in r.output, r.output


def test_stats_command_writes_markdown_and_csv(store):
    r = CliRunner().invoke(bench_cli, ["stats", "--results", str(store), "--bootstrap", "50"])
    assert r.exit_code == 0, r.output
    csv = pd.read_csv(store / "stats.csv")
    md = (store / "stats.md").read_text()
    assert set(csv.metric) == set(S.SEED_METRICS) and len(csv) == 6 * len(S.SEED_METRICS)
    row = csv[(csv.a == "swa-ce") & (csv.b == "swa-crt") & (csv.metric == "acc")].iloc[0]
    assert row.boot_replicates == 50 and row.n == 3
    assert S.fmt(row.diff_mean, "acc", True) in md


def _claims_table(md: str, title: str) -> dict[str, list[str]]:
    """The rows of one claims table in stats.md: setting -> cells (parsed as a reader would, by its bold title)."""
    lines = md.split("## ", 2)[1].splitlines()  # the claims section precedes the first setting's
    start = lines.index(title)
    rows = {}
    for line in lines[start + 4:]:
        if not line.startswith("| "):
            break
        cells = [x.strip() for x in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _independent_cell(store: Path, tag: str, a: str, b: str, metric: str, nd: int, marks: str = "") -> str:
    """The claims cell re-derived from metrics.json with pandas + scipy (no ltbench formatting code)."""
    seeds = sorted(int(p.name[4:]) for p in (store / "runs" / tag / a).glob("seed*")
                   if (store / "runs" / tag / b / p.name).is_dir())
    val = {n: pd.Series([pd.read_json(store / "runs" / tag / n / f"seed{s}" / "metrics.json", typ="series")[metric]
                         for s in seeds]) for n in (a, b)}
    d = val[a] - val[b]

    def f(v: float) -> str:
        return f"{v:+.{nd}f}".replace("-", "−")
    agree = f"{int((np.sign(d) == np.sign(d.mean())).sum())}/{len(d)}"
    if len(d) == 1:
        return f"{f(d.mean())} {agree}{marks}"
    lo, hi = scipy_stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=d.std(ddof=1) / math.sqrt(len(d)))
    text = f"{f(d.mean())} ± {d.std(ddof=1):.{nd}f} [{f(lo)}, {f(hi)}] {agree}{marks}"
    return f"**{text}**" if lo > 0 or hi < 0 else text


def _claims_md(store: Path, reference: str = "crt") -> str:
    return S.render_markdown(S.all_comparisons(store, reference=reference, replicates=0), reference,
                             claims=S.claim_tables(collect_runs(store).runs))


EXT_TITLE = "**SWA extractor − SGD extractor, accuracy (points), per method**"
SREPR_TITLE = "**SWA + SRepr − SWA + cRT (accuracy, NLL, ECE), and − SGD + cRT (accuracy)**"


def test_claims_tables_read_each_setting_against_an_independent_computation(store):
    """The summary of the paper's two claims (SWA vs SGD per method; SRepr vs cRT) agrees with per-seed
    differences computed from metrics.json, bolds exactly the cells whose seed interval excludes zero, leaves a
    pair that a setting lacks empty, and does not depend on the reference the other tables use."""
    for s in range(3):  # SRepr here and in a second setting (cRT on both extractors, no CE there)
        make_run(store, "srepr", "swa", s, 0.64 + 0.01 * s)
        for stage1, method, acc in [("sgd", "crt", 0.40), ("swa", "crt", 0.45), ("swa", "srepr", 0.45)]:
            make_run(store, method, stage1, s, acc + (0.03 if s == 1 and method == "srepr" else 0.0),
                     dataset="cifar100-lt", imbalance=50, counts=[50] * 10)
    for stage1, acc in (("sgd", 0.5), ("swa", 0.55)):  # a setting with a single seed: the difference alone
        make_run(store, "crt", stage1, 0, acc, dataset="cifar10-lt", imbalance=50)
    md = _claims_md(store)
    ext, srepr = _claims_table(md, EXT_TITLE), _claims_table(md, SREPR_TITLE)
    tag = "cifar10-lt-if100"
    assert ext[tag] == [_independent_cell(store, tag, "swa-ce", "sgd-ce", "acc", 2),
                        _independent_cell(store, tag, "swa-crt", "sgd-crt", "acc", 2), "", ""]  # no LWS on SGD
    for t in (tag, "cifar100-lt-if50"):
        assert srepr[t] == [_independent_cell(store, t, "swa-srepr", "swa-crt", "acc", 2),
                            _independent_cell(store, t, "swa-srepr", "swa-crt", "nll", 3),
                            _independent_cell(store, t, "swa-srepr", "swa-crt", "ece", 2),
                            _independent_cell(store, t, "swa-srepr", "sgd-crt", "acc", 2)]
    one = ext["cifar10-lt-if50"][1]
    assert one == _independent_cell(store, "cifar10-lt-if50", "swa-crt", "sgd-crt", "acc", 2)
    assert one.endswith(" 1/1") and "±" not in one and "[" not in one and not one.startswith("**")
    assert ext["cifar100-lt-if50"][0] == "" and "cifar10-lt-if50" not in srepr  # no CE there; no SRepr there
    cells = [c for row in list(ext.values()) + list(srepr.values()) for c in row]
    assert any(c.startswith("**") for c in cells) and any(c and not c.startswith("**") for c in cells)
    assert md.index("## The paper's claims") < md.index(f"## {tag}")
    assert "The paper's claims" not in S.render_markdown([]) and "† reduced" not in md.split("## cifar10")[0]
    heads = []
    for ref in ("crt", "lws"):  # the claims as written by write_stats (the real path), whatever the reference
        S.write_stats(store, reference=ref, replicates=0)
        heads.append((store / "stats.md").read_text().split("\n## cifar10")[0].split("## The paper's claims")[1])
    assert heads[0] == heads[1] == md.split("\n## cifar10")[0].split("## The paper's claims")[1]
    assert "SWA + SRepr − SWA + cRT" in heads[1]
    for stage1 in ("sgd", "swa"):  # a reduced setting: its cells are marked, and the mark explained
        make_run(store, "crt", stage1, 3, 0.6, dataset="cifar10-lt", imbalance=10, reduced=True)
    claims = _claims_md(store).split("## cifar10")[0]
    assert _claims_table(claims, EXT_TITLE)["cifar10-lt-if10"][1].endswith(" 1/1 †")
    assert "† reduced schedule" in claims and "†" not in "".join(ext[tag] + srepr[tag])


def test_claims_take_a_methods_only_variant_row_and_name_it(tmp_path):
    """A store holding only a variant row of cRT (recorded before an option existed, like results/reduced-cpu)
    still reads the claims, with the cell marked § and each pair named once beneath the table."""
    from ltbench.registry import get_method
    cached = {"method_options": {**get_method("crt").defaults, "features": "cached"}}
    for s in range(2):
        for stage1 in ("sgd", "swa"):
            make_run(tmp_path, "crt", stage1, s, 0.5 + 0.05 * (stage1 == "swa"), config_extra=cached)
        make_run(tmp_path, "srepr", "swa", s, 0.6)
    md = _claims_md(tmp_path)
    tag = "cifar10-lt-if100"  # the folders are swa-crt / sgd-crt; the rows crt[features=cached]
    assert "SWA + cRT [features=cached] − SGD + cRT [features=cached]" in md  # stats.md's own rows use the variant
    assert _claims_table(md, EXT_TITLE)[tag][1] == _independent_cell(tmp_path, tag, "swa-crt", "sgd-crt", "acc", 2,
                                                                     " §")
    assert _claims_table(md, SREPR_TITLE)[tag][3] == _independent_cell(tmp_path, tag, "swa-srepr", "sgd-crt", "acc",
                                                                       2, " §")
    assert ("§ SWA − SGD, pairs with a row of non-default options: cifar10-lt-if100 SWA + cRT [features=cached] "
            "− SGD + cRT [features=cached].") in md
    assert ("§ SRepr − cRT, pairs with a row of non-default options: cifar10-lt-if100 SWA + SRepr − SWA + cRT "
            "[features=cached]; cifar10-lt-if100 SWA + SRepr − SGD + cRT [features=cached].") in md
    mixed = tmp_path / "mixed"  # plain cRT on SWA, the variant on SGD: SWA − SGD would mix options, so no cell
    for s in range(2):
        make_run(mixed, "crt", "sgd", s, 0.5, config_extra=cached)
        make_run(mixed, "crt", "swa", s, 0.55)
        make_run(mixed, "ce", "sgd", s, 0.4)
        make_run(mixed, "ce", "swa", s, 0.45)
    md = _claims_md(mixed)
    assert _claims_table(md, EXT_TITLE)[tag][0] != "" and _claims_table(md, EXT_TITLE)[tag][1] == ""
    assert "SWA + cRT − SGD + cRT [features=cached]" in md  # stats.md below still sets them side by side


@pytest.mark.parametrize("repo_results", COMMITTED_STORES, ids=STORE_IDS)
def test_committed_stats_are_current(repo_results, tmp_path, monkeypatch):
    """<store>/stats.md and stats.csv are what `bench.py stats --results <store>` makes of the committed runs
    today (run from the folder holding the copy, as the committed files were made from the checkout)."""
    if not (repo_results / "stats.md").is_file():
        pytest.skip("no committed statistics")
    rel = repo_results.relative_to(REPO)
    copy = tmp_path / rel
    shutil.copytree(repo_results / "runs", copy / "runs")
    monkeypatch.chdir(tmp_path)
    S.write_stats(rel)
    for name in ("stats.md", "stats.csv"):
        assert (copy / name).read_text() == (repo_results / name).read_text(), (
            f"{rel}/{name} is stale: run `bench.py stats --results {rel}` (or `bench.py site`) and commit")


def test_decimal_tokens():
    assert decimal_tokens("23.68 % vs 38.32-41.40 %, −0.06 ± 0.21 [-0.24, +0.14] 3/3 200") == [
        "23.68", "38.32", "41.40", "−0.06", "0.21", "−0.24", "+0.14"]


@pytest.mark.parametrize("results", COMMITTED_STORES, ids=STORE_IDS)
def test_findings_quote_only_generated_numbers(results):
    """<store>/findings.md is hand-written: every decimal number in it must be one that the generated statistics
    (stats.md) or tables (tables/*.md) of the same store print, sign and digits alike, so it cannot drift from the
    runs (a nested store counts only where the findings name it as ``<name>/``: ltbench.report.findings)."""
    missing = unprinted_numbers(results)
    if missing is None:
        pytest.skip("no findings.md or stats.md")
    assert decimal_tokens((results / "findings.md").read_text()), "findings.md quotes no number"
    assert not missing, (f"{results}/findings.md quotes {', '.join(missing)}, which no generated file prints; update "
                         "the text from that store's stats.md / tables (bench.py stats, bench.py leaderboard)")


def test_a_drifted_number_is_caught_and_a_nested_store_counts_only_where_named(tmp_path):
    """The check itself: a number that no generated file prints is reported; one that only a nested store prints
    counts when the findings name that store as ``<name>/`` and not otherwise."""
    store = tmp_path / "results"
    make_run(store, "ce", "sgd", 0, 0.45)
    nested = store / "other"
    make_run(nested, "ce", "sgd", 0, 0.45)
    (store / "stats.md").write_text("| CE | 45.12 | −0.30 [-0.41, +0.02] |\n")
    (nested / "stats.md").write_text("| CE | 47.77 |\n")
    (store / "findings.md").write_text("CE 45.12, difference -0.30 [−0.41, +0.02]; elsewhere 47.77.\n")
    assert unprinted_numbers(store) == ["47.77"]
    (store / "findings.md").write_text("CE 45.12; in other/ 47.77, and 45.13 drifted.\n")
    assert unprinted_numbers(store) == ["45.13"]
    (store / "stats.md").unlink()
    assert unprinted_numbers(store) is None


def test_full_and_reduced_runs_are_never_paired(tmp_path):
    """While a full-schedule grid is filled in, SGD seed 0 may be full and SWA seed 0 still reduced: comparing
    them would credit the schedule to the extractor. Only seeds whose two runs share a schedule are paired."""
    for s in range(3):
        make_run(tmp_path, "crt", "swa", s, 0.62, reduced=True)
        make_run(tmp_path, "crt", "sgd", s, 0.40 if s == 0 else 0.60, reduced=s != 0)
    make_run(tmp_path, "ce", "sgd", 0, 0.45)  # full, like sgd-crt seed 0
    runs = collect_runs(tmp_path).runs  # sgd-crt keeps only its full seed 0 (the reduced ones are dropped)
    assert sorted(runs[(runs.stage1_mode == "sgd") & (runs.method == "crt")].seed) == [0]
    assert S.paired(runs, "cifar10-lt-if100", "swa-crt", "sgd-crt", replicates=0) is None
    c = S.paired(runs, "cifar10-lt-if100", "sgd-crt", "sgd-ce", replicates=0)
    assert c is not None and c.seeds == [0] and not c.reduced
    kinds = [(c.a, c.b) for c in S.all_comparisons(tmp_path, replicates=0)]
    assert ("swa-crt", "sgd-crt") not in kinds and ("sgd-ce", "sgd-crt") in kinds
    r = CliRunner().invoke(bench_cli, ["compare", "--paired", "swa-crt", "sgd-crt", "--results", str(tmp_path)])
    assert r.exit_code == 2 and "same schedule" in r.output, r.output


def test_leaderboard_readme_opens_with_the_same_claims_as_stats_md(store):
    """results/README.md carries the claims tables of stats.md (seed statistics need no bootstrap, so the two agree
    whatever --bootstrap stats.md was written with), before the first setting, linking stats.md when it exists."""
    from ltbench.report.leaderboard import build_leaderboard

    def rows(text: str) -> list[str]:
        head = text.split("## The paper's claims", 1)[1].split("\n## ", 1)[0]
        return [line for line in head.splitlines() if line.startswith("| ")]
    build_leaderboard(store, plots=False, echo=lambda s: None)
    readme = (store / "README.md").read_text()
    assert "(stats.md)." in readme and "[stats.md](stats.md)" not in readme  # no stats.md yet: named, not linked
    S.write_stats(store, replicates=20)
    build_leaderboard(store, plots=False, echo=lambda s: None)
    readme = (store / "README.md").read_text()
    assert rows(readme) == rows((store / "stats.md").read_text()) and len(rows(readme)) == 2  # head + one setting
    assert readme.index("## The paper's claims") < readme.index("## cifar10-lt-if100")
    assert "[stats.md](stats.md)" in readme
