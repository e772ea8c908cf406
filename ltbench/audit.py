"""Validate run folders: schema, metrics recomputed from ``predictions.npz``, config consistent with the path, the
schedule (``reduced``) consistent with the epochs in ``log.jsonl`` and the protocol, stability flags recomputed.

``check_run`` is what ``bench.py results check`` runs and what the tables and the leaderboard consult before
using a run. ``stability_flags`` is what the runner records as ``unstable`` in config.json.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .metrics import compute_metrics
from .paths import parse_dataset_tag, parse_run_name, parse_seed_name, run_path_of_config, run_path_of_dir, runs_root
from .store import PREDICTION_KEYS

METRIC_KEYS = ("acc", "acc_many", "acc_medium", "acc_few", "nll", "ece", "brier", "n_train", "n_test")
CONFIG_KEYS = ("method", "dataset", "imbalance", "stage1_mode", "seed", "reduced", "stage1", "stage2",
               "train_class_counts")


# An unstable stage 2 (recorded, flagged, not hidden): the last stage-2 epoch's training loss above
# LOSS_RISE_BOUND x the first epoch's, or a test NLL above NLL_BOUND x log C (log C: the NLL of a uniform guess).
LOSS_RISE_BOUND = 2.0
NLL_BOUND = 3.0


def stability_flags(log_rows: list[dict], metrics: dict, num_classes: int) -> list[str]:
    """Why a run's stage 2 looks unstable (empty when it does not); pure, from its log rows and test metrics.

    Only non-finite values stop a run (DivergedError); a loss that grows several-fold, or predictions far worse
    than a uniform guess, still produce numbers that would be ranked as if sound, so they are flagged.
    """
    flags = []
    losses = [float(r["loss"]) for r in log_rows
              if r.get("stage") == 2 and isinstance(r.get("loss"), (int, float)) and not isinstance(r["loss"], bool)]
    if len(losses) >= 2 and losses[-1] > LOSS_RISE_BOUND * losses[0] and losses[-1] > losses[0]:
        flags.append(f"stage-2 loss rose from {losses[0]:.4g} (first epoch) to {losses[-1]:.4g} (last epoch), "
                     f"more than {LOSS_RISE_BOUND:g}x")
    nll = metrics.get("nll")
    if isinstance(nll, (int, float)) and num_classes > 1:
        bound = NLL_BOUND * math.log(num_classes)
        if not math.isfinite(nll) or nll > bound:
            flags.append(f"test NLL {nll:.4g} above {NLL_BOUND:g} x log C = {bound:.4g} (C = {num_classes})")
    return flags


def _builtin_protocol(preset) -> tuple[int, int] | None:
    """(stage-1, stage-2) protocol epochs of a built-in preset named in a config (its ``protocol_epochs``, else its
    ``epochs``), None for a preset file or an unknown name."""
    import tomllib
    from .config import PRESET_DIR, Stage1Config, Stage2Config
    if not isinstance(preset, str) or "/" in preset or "\\" in preset or preset.endswith(".toml"):
        return None
    path = PRESET_DIR / f"{preset}.toml"
    if not path.is_file():
        return None
    raw = tomllib.loads(path.read_text())
    s1, s2 = raw.get("stage1", {}), raw.get("stage2", {})
    return (int(s1.get("protocol_epochs", s1.get("epochs", Stage1Config.epochs))),
            int(s2.get("protocol_epochs", s2.get("epochs", Stage2Config.epochs))))


def schedule_problems(config: dict, log_rows: list[dict]) -> list[str]:
    """``reduced`` cross-checked against the epochs the log shows were trained and the protocol's epochs.

    ``reduced`` decides the dagger in every table and whether a run may stand beside full-schedule ones, so an edited
    flag (or edited epochs) must not pass: the stage-1/stage-2 epochs in ``log.jsonl`` must be the configured ones,
    a built-in preset's protocol epochs the recorded ones, and ``reduced`` true exactly when a stage ran fewer epochs
    than its protocol. Stage 2 of a method that trains nothing (ce, tau-norm) has no log rows; its configured
    epochs count.
    """
    problems = []
    s1, s2 = config.get("stage1") or {}, config.get("stage2") or {}
    configured = {1: s1.get("epochs"), 2: s2.get("epochs")}
    protocol = {1: s1.get("protocol_epochs", configured[1]), 2: s2.get("protocol_epochs", configured[2])}
    logged: dict[int, int | None] = {}
    for st in (1, 2):
        ep = [r["epoch"] for r in log_rows if r.get("stage") == st and isinstance(r.get("epoch"), int)]
        logged[st] = max(ep) if ep else None
        if logged[st] is not None and logged[st] != configured[st]:
            problems.append(f"log.jsonl holds {logged[st]} stage-{st} epochs, config.json says {configured[st]}")
    builtin = _builtin_protocol(config.get("preset"))
    if builtin is not None and (protocol[1], protocol[2]) != builtin:
        problems.append(f"config.json records protocol epochs {protocol[1]}/{protocol[2]} (stage 1/2), preset "
                        f"{config.get('preset')!r} has {builtin[0]}/{builtin[1]}")
        protocol = {1: builtin[0], 2: builtin[1]}
    ran = {st: logged[st] if logged[st] is not None else configured[st] for st in (1, 2)}
    if all(isinstance(v, int) for v in (*ran.values(), *protocol.values())):
        want = ran[1] < protocol[1] or ran[2] < protocol[2]
        if bool(config.get("reduced")) != want:
            problems.append(f"config.json says reduced={str(bool(config.get('reduced'))).lower()}, but the run trained "
                            f"{ran[1]}/{ran[2]} epochs (stage 1/2) of the protocol's {protocol[1]}/{protocol[2]}")
    return problems


def _close(a, b, tol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def check_run(d: Path, tol: float = 1e-6) -> list[str]:
    """Problems with run folder ``d`` (an empty list means it is sound)."""
    d = Path(d)
    problems: list[str] = []
    for f in ("config.json", "metrics.json", "predictions.npz", "log.jsonl"):
        if not (d / f).is_file():
            problems.append(f"missing {f}")
    if problems:
        return problems
    try:
        config = json.loads((d / "config.json").read_text())
        metrics = json.loads((d / "metrics.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return [f"unreadable json: {e}"]
    if not isinstance(config, dict) or not isinstance(metrics, dict):
        return ["config.json and metrics.json must each hold one JSON object"]
    log_rows: list[dict] = []
    try:
        for no, line in enumerate((d / "log.jsonl").read_text().splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                log_rows.append(row if isinstance(row, dict) else {})
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problems.append(f"log.jsonl line {no} is not JSON ({e})")
    problems += [f"config.json lacks {k!r}" for k in CONFIG_KEYS if k not in config]
    problems += [f"metrics.json lacks {k!r}" for k in METRIC_KEYS if k not in metrics]
    problems += [f"metrics.json[{k!r}] is {type(metrics[k]).__name__}, not a number" for k in METRIC_KEYS
                 if k in metrics and metrics[k] is not None
                 and (isinstance(metrics[k], bool) or not isinstance(metrics[k], (int, float)))]
    if problems:
        return problems
    sub = config.get("subset_seed", 0)
    if isinstance(sub, bool) or not isinstance(sub, int) or sub < 0:
        return problems + [f"config.json's subset_seed {sub!r} is not a non-negative integer"]
    want = run_path_of_config(config)
    have = run_path_of_dir(d)
    if want != have:
        problems.append(f"folder {'/'.join(have)} does not match its config ({'/'.join(want)})")
    try:
        with np.load(d / "predictions.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001
        return problems + [f"predictions.npz unreadable: {type(e).__name__}: {e}"]
    missing = set(PREDICTION_KEYS) - set(arrays)
    if missing:
        return problems + [f"predictions.npz lacks {sorted(missing)}"]
    n = len(arrays["labels"])
    for k in PREDICTION_KEYS:
        if arrays[k].shape != (n,):
            problems.append(f"predictions.npz[{k!r}] has shape {arrays[k].shape}, expected ({n},)")
    if problems:
        return problems
    counts = np.asarray(config["train_class_counts"])
    c = len(counts)
    if n and (arrays["labels"].min() < 0 or arrays["labels"].max() >= c or arrays["pred"].min() < 0
              or arrays["pred"].max() >= c):
        problems.append(f"labels or predictions outside [0, {c - 1}]")
    conf = arrays["confidence"]
    if not np.all(np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1 + 1e-6:
        problems.append("confidence outside [0, 1]")
    if problems:
        return problems
    mine = compute_metrics(arrays, counts)
    for k in METRIC_KEYS:
        r, v = metrics.get(k), mine.get(k)
        if isinstance(r, float) and math.isnan(r):
            problems.append(f"{k} is NaN")
        elif not _close(r, v, tol):
            problems.append(f"{k}: metrics.json says {r}, recomputed {v}")
    problems += schedule_problems(config, log_rows)
    if "unstable" in config:  # recorded since issue 15: must be what the log and the metrics give
        flags = stability_flags(log_rows, metrics, c)
        if config["unstable"] != flags:
            problems.append(f"config.json's unstable flags {config['unstable']!r} disagree with the log and metrics "
                            f"({flags!r})")
    return problems


def check_all(results: Path | str, tol: float = 1e-6) -> dict[Path, list[str]]:
    """Problems of every entry under ``<results>/runs`` that is or should be a run folder, by path.

    Beyond ``check_run`` on each ``<dataset>/<stage1>-<method>/seed<S>`` folder (complete or not), this flags the
    hidden ``.seed<S>.tmp-*`` / ``.old-*`` folders a killed writer leaves behind and stray entries that do not fit
    the layout, so a reader knows what the tables will leave out and why. Sound runs map to an empty list. Other
    hidden entries (``.gitkeep``, ``.DS_Store``) are skipped, as the tables skip them.
    """
    root = runs_root(results)
    out: dict[Path, list[str]] = {}
    if not root.is_dir():
        return out
    for ds in sorted(root.iterdir()):
        if _hidden_other(ds):
            continue
        if ds.name.startswith(".probe-"):
            out[ds] = ["leftover write probe (a killed process); safe to delete"]
            continue
        if not ds.is_dir():
            out[ds] = ["stray file: expected only <dataset> folders under runs/"]
            continue
        if not _parses(parse_dataset_tag, ds.name):
            out[ds] = ["stray entry: expected <dataset>[-if<N>][-subset<K>] folders under runs/"]
            continue
        for name in sorted(ds.iterdir()):
            if _hidden_other(name):
                continue
            if not name.is_dir() or not _parses(parse_run_name, name.name):
                out[name] = ["stray entry: expected <stage1>-<method> folders"]
                continue
            for seed in sorted(p for p in name.iterdir() if not _hidden_other(p)):
                if seed.name.startswith(".") and (".tmp-" in seed.name or ".old-" in seed.name):
                    out[seed] = ["leftover of an interrupted write (not a run; `results check --clean` removes it)"]
                elif not seed.is_dir() or not _parses(parse_seed_name, seed.name):
                    out[seed] = ["stray entry: expected seed<S> run folders"]
                else:
                    out[seed] = check_run(seed, tol)
    return out


def _hidden_other(path: Path) -> bool:
    """A hidden entry that is not a leftover of ours (e.g. ``.gitkeep``): not a run, not a problem."""
    return path.name.startswith(".") and not is_leftover(path)


def _parses(parse, name: str) -> bool:
    try:
        parse(name)
    except ValueError:
        return False
    return True


def is_leftover(path: Path) -> bool:
    """True for the hidden tmp/old folders and write probes that ``check_all`` reports as leftovers."""
    n = Path(path).name
    return n.startswith(".probe-") or (n.startswith(".") and (".tmp-" in n or ".old-" in n))
