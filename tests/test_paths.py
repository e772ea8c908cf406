"""ltbench.paths: the run-store and cache layouts, built and parsed in one place, names unchanged."""
import hashlib
import json
from pathlib import Path

import pytest

from ltbench import paths
from ltbench.config import resolve
from report_fixtures import COMMITTED_STORES, STORE_IDS

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("results", COMMITTED_STORES, ids=STORE_IDS)
def test_committed_runs_round_trip(results):
    """Every committed run folder parses into the parts its config names, and is rebuilt byte for byte."""
    dirs = list(paths.iter_run_dirs(results))
    if not dirs:
        pytest.skip("no committed runs")
    for d in dirs:
        c = json.loads((d / "config.json").read_text())
        p = paths.parse_run_dir(d)
        assert (p.dataset, p.imbalance, p.subset_seed, p.stage1_mode, p.method, p.seed) == \
            (c["dataset"], c["imbalance"], c.get("subset_seed", 0), c["stage1_mode"], c["method"], c["seed"])
        assert p.results == results and p.dataset_tag == c["dataset_tag"]
        assert paths.run_dir(results, *paths.run_path_of_config(c)[:2], c["seed"]) == d
        assert str(paths.run_dir(results, p.dataset_tag, p.run_name, p.seed)) == str(d)


@pytest.mark.parametrize("results", COMMITTED_STORES, ids=STORE_IDS)
def test_a_committed_store_with_runs_has_its_generated_files(results):
    """The "is current" tests of the leaderboard, tables, stats and site skip a store that lacks them; a store
    committed with runs but without them would pass unchecked, so their presence is asserted here."""
    if not any(paths.iter_run_dirs(results)):
        pytest.skip("no committed runs")
    missing = [f for f in ("README.md", "stats.md", "stats.csv", "findings.md", "tables/results.csv",
                           "site/index.html") if not (results / f).is_file()]
    assert not missing, f"{results} has runs but not {', '.join(missing)}: run bench.py leaderboard and site on it"


@pytest.mark.parametrize("tag,parts", [("cifar100-lt-if100", ("cifar100-lt", 100, 0)),
                                       ("cifar10-lt-tiny", ("cifar10-lt-tiny", None, 0)),
                                       ("imagenet-lt", ("imagenet-lt", None, 0)),
                                       ("cifar10-lt-if50-subset12", ("cifar10-lt", 50, 12))])
def test_dataset_tag_round_trip(tag, parts):
    assert paths.parse_dataset_tag(tag) == parts
    assert paths.dataset_tag(*parts) == tag


@pytest.mark.parametrize("bad", ["runs/x/sgdce/seed0", "runs/x/sgd-ce/seedx", "runs/x/sgd-ce/seed",
                                 "other/x/sgd-ce/seed0", "runs/x-subset0/sgd-ce/seed0", "runs/.x/sgd-ce/seed0",
                                 "runs/x/.sgd-ce/seed0"])
def test_parse_refuses_other_layouts(bad):
    with pytest.raises(ValueError):
        paths.parse_run_dir(bad)


def test_results_of_a_relative_run_folder():
    assert paths.results_of("runs/cifar10-lt-tiny/sgd-ce/seed0") == Path(".")
    assert paths.results_of("/a/b/runs/cifar10-lt-tiny/sgd-ce/seed0") == Path("/a/b")


def test_iter_run_dirs_skips_hidden_and_incomplete(tmp_path):
    for rel in ("a-if1/sgd-ce/seed0", "a-if1/sgd-ce/.seed1.tmp-h.1-x", "a-if1/sgd-crt/seed0"):
        (tmp_path / "runs" / rel).mkdir(parents=True)
    for rel in ("a-if1/sgd-ce/seed0", "a-if1/sgd-ce/.seed1.tmp-h.1-x"):
        (tmp_path / "runs" / rel / "metrics.json").write_text("{}")
    assert list(paths.iter_run_dirs(tmp_path)) == [tmp_path / "runs" / "a-if1" / "sgd-ce" / "seed0"]
    assert list(paths.iter_run_dirs(tmp_path / "nowhere")) == []


def test_cache_names_are_the_established_ones(tmp_path, monkeypatch):
    """The stage-1, stage-2 and feature-cache names as the code wrote them before this module (restated here)."""
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path))
    cfg = resolve("crt", "cifar100-lt", 100, "swa", 2, "cifar", epochs=4)
    fp = "0123456789abcdef"
    s1 = paths.stage1_dir(cfg, fp)
    assert s1 == tmp_path / "stage1" / f"cifar100-lt-if100-swa-seed2-{cfg.stage1_key()}-d01234567"
    established = ("epochs", "protocol_epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay")
    stage2 = {k: getattr(cfg.stage2, k) for k in established}  # the fields before the optional step schedule
    options = {k: v for k, v in cfg.method_options.items() if k != "backbone"}  # before it: keyed only if not frozen
    payload = json.dumps({"method": cfg.method, "options": options, "stage2": stage2,
                          "eval": cfg.eval_batch_size}, sort_keys=True, default=str)
    h = hashlib.sha256(payload.encode()).hexdigest()[:12]
    assert paths.stage2_dir(cfg, s1) == tmp_path / "stage2" / f"{s1.name}-crt-{h}"
    assert paths.base_features_file(s1, "train") == s1 / "features" / "base-train.pt"
    assert paths.swag_pool_file(s1, "k", "test") == s1 / "features" / "swag-pool-k-test.pt"
    assert paths.swag_members_file(s1, "k") == s1 / "features" / "swag-pool-k-members.pt"


def test_stage1_cached_finds_any_data_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("LTBENCH_CACHE", str(tmp_path))
    cfg = resolve("ce", "cifar10-lt-tiny", None, "sgd", 0, "cifar-tiny", epochs=2)
    other = resolve("ce", "cifar10-lt-tiny", None, "sgd", 1, "cifar-tiny", epochs=2)
    assert not paths.stage1_cached(cfg)
    d = paths.stage1_dir(cfg, "feedfacecafebeef")
    d.mkdir(parents=True)
    assert not paths.stage1_cached(cfg)  # a folder without final.pt: not finished
    (d / "final.pt").write_bytes(b"x")
    assert paths.stage1_cached(cfg) and not paths.stage1_cached(other)
    assert paths.stage1_candidates(cfg) == [d]
    s2 = paths.stage2_dir(cfg, d)
    s2.mkdir(parents=True)
    assert paths.stage2_dirs_of(d) == [s2] and paths.stage2_dirs_of(paths.stage1_dir(other, "ab")) == []


def test_paths_is_torch_free():
    import subprocess
    import sys
    code = "import sys, ltbench.paths, ltbench.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
