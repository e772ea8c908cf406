"""Published baseline numbers (``results/baselines.csv``) and the comparison of our runs against them.

Every row must name its source (paper + table, or repository + file): a number without a source is rejected
when the file is read, so an unsourced number can never reach a comparison table.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pandas as pd

from ..errors import LtbenchError
from .tables import (STAGE1_NAMES, cell_text, method_label, split_method_key, tau_footnote, unstable_bound_text,
                     variant_text)

COLUMNS = ("dataset", "imbalance", "backbone", "method", "stage1", "epochs", "acc", "many", "medium", "few",
           "nll", "ece", "split_rule", "source", "note")
NUMERIC = ("acc", "many", "medium", "few", "nll", "ece")
PERCENT = ("acc", "many", "medium", "few", "ece")
DATASETS = ("cifar10-lt", "cifar100-lt", "imagenet-lt", "inat2018")
_ALIASES = {"imagenet_lt": "imagenet-lt", "imagenetlt": "imagenet-lt", "inaturalist2018": "inat2018",
            "inaturalist-2018": "inat2018", "inat-2018": "inat2018", "inat18": "inat2018", "inat": "inat2018",
            "cifar10_lt": "cifar10-lt", "cifar100_lt": "cifar100-lt"}
# ours (metrics.json key) -> baselines.csv column
COMPARED = (("acc", "acc"), ("acc_many", "many"), ("acc_medium", "medium"), ("acc_few", "few"), ("nll", "nll"),
            ("ece", "ece"))


def canonical_dataset(name: str) -> str:
    """One spelling per benchmark, so a run of 'imagenet_lt' meets the published 'imagenet-lt' numbers."""
    n = str(name).strip().lower()
    return _ALIASES.get(n, n)


def default_baselines_path() -> Path:
    return Path(__file__).resolve().parents[2] / "results" / "baselines.csv"


_OPTION_SPLIT = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")  # 'a=1,taus=0,0.5,b=x' -> 'a=1' | 'taus=0,0.5' | 'b=x'


def published_method_key(text: str, where: str) -> str:
    """A published row's method, with the options it ran under where they are not the reference's, as the tables
    name a run: 'crt[backbone=finetune]' (BagofTricks-LT's cRT re-trains the backbone). The options are typed and
    checked against the method's declaration and written in its order, so the two sides compare as one key; an
    option set to its default is dropped."""
    base, bracket, rest = text.strip().partition("[")
    base = base.strip()
    if not bracket:
        return base
    if not rest.endswith("]"):
        raise LtbenchError(f"{where}: method {text!r}: write the options as method[key=value,...]")
    from ..options import resolve_options
    from ..registry import get_method, method_names
    if base not in method_names():
        raise LtbenchError(f"{where}: method {text!r}: options are only for a registered method "
                           f"({', '.join(method_names())}); drop the [...] for another method")
    given: dict[str, str] = {}
    for pair in (p for p in _OPTION_SPLIT.split(rest[:-1]) if p.strip()):
        key, eq, value = (x.strip() for x in pair.partition("="))
        if not eq or not key:
            raise LtbenchError(f"{where}: method {text!r}: {pair!r} is not key=value")
        if key in given:
            raise LtbenchError(f"{where}: method {text!r}: option {key} is given twice")
        if value.startswith("[") and value.endswith("]"):  # a list as the tables write it: taus=[0.0,0.5]
            value = value[1:-1]
        given[key] = value
    cls = get_method(base)
    variant = variant_text(cls.defaults, resolve_options(cls.option_specs, given, f"{where}: method {base!r}"))
    return f"{base}[{variant}]" if variant else base


def _float(v: str, col: str, where: str) -> float:
    if v is None or str(v).strip() == "":
        return math.nan
    try:
        x = float(v)
    except ValueError:
        raise LtbenchError(f"{where}: column {col!r} is {v!r}, not a number") from None
    if col in PERCENT and not 0.0 <= x <= 100.0:
        raise LtbenchError(f"{where}: {col} = {x} is outside [0, 100] (percent expected)")
    if col == "nll" and x < 0:
        raise LtbenchError(f"{where}: nll = {x} is negative")
    return x


def load_baselines(path: Path | str | None = None) -> pd.DataFrame:
    """Read and validate the baselines file; raise LtbenchError naming the line of any bad row."""
    path = Path(path) if path else default_baselines_path()
    if not path.is_file():
        raise LtbenchError(f"baselines file {path} not found (pass --baselines FILE)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LtbenchError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        rows = []
        for i, r in enumerate(reader, start=2):
            where = f"{path}:{i}"
            if r.get(None):  # csv puts the fields beyond the header under None
                raise LtbenchError(f"{where}: more fields than the header's {len(reader.fieldnames)}; a field that "
                                   'holds a comma (a method with options: "tau_norm[keep_bias=true,selection=fixed]")'
                                   " must be in double quotes")
            if not (r.get("source") or "").strip():
                raise LtbenchError(f"{where}: row for {r.get('method')!r} on {r.get('dataset')!r} has no source; "
                                   "every published number needs its paper/table or repository file")
            ds = canonical_dataset(r["dataset"])
            if ds not in DATASETS:
                raise LtbenchError(f"{where}: unknown dataset {r['dataset']!r}; valid: {', '.join(DATASETS)}")
            if not (r.get("method") or "").strip():
                raise LtbenchError(f"{where}: empty method")
            row = {c: (r.get(c) or "").strip() for c in COLUMNS}
            row["dataset"] = ds
            row["method"] = published_method_key(row["method"], where)
            row["imbalance"] = int(row["imbalance"]) if row["imbalance"] else None
            for c in NUMERIC:
                row[c] = _float(r.get(c), c, where)
            if all(math.isnan(row[c]) for c in NUMERIC):
                raise LtbenchError(f"{where}: no number in any of {', '.join(NUMERIC)}")
            rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _imb_equal(a, b) -> bool:
    na = a is None or (isinstance(a, float) and math.isnan(a))
    nb = b is None or (isinstance(b, float) and math.isnan(b))
    return (na and nb) or (not na and not nb and int(a) == int(b))


def compare(agg: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """One row per (our setting, published row) with the same dataset, imbalance factor and stage-2 method.

    A variant row (non-default method options, e.g. 'crt[backbone=finetune]') is compared with its method's
    published rows too, under its own label; a published row names its own options the same way. Where the two
    sides' options differ, ``options_differ`` is True (the rendered table marks the row), so a published number from
    another regime is shown but never passed off as the same method. ``d_<metric>`` = ours (mean over seeds) -
    published; NaN where either side lacks the number.
    """
    out = []
    pub_keys = [split_method_key(m) for m in baselines.method]
    for _, r in agg.iterrows():
        ds = canonical_dataset(r["dataset"])
        base, variant = split_method_key(r["method"])
        match = baselines[(baselines.dataset == ds).to_numpy() & [b == base for b, _ in pub_keys]]
        match = match[[_imb_equal(x, r["imbalance"]) for x in match.imbalance]]
        for _, b in match.iterrows():
            pub_variant = split_method_key(b["method"])[1]
            row = {"dataset_tag": r["dataset_tag"], "stage1_mode": r["stage1_mode"], "method": r["method"],
                   "pub_method": b["method"], "options_differ": pub_variant != variant,
                   "n": int(r["n"]), "reduced": bool(r["reduced"]), "unstable_seeds": str(r.get("unstable_seeds", "")),
                   "tau_choices": r.get("tau_choices"),
                   "pub_backbone": b["backbone"],
                   "pub_stage1": b["stage1"], "pub_epochs": b["epochs"], "source": b["source"], "note": b["note"]}
            for ours, pub in COMPARED:
                m = float(r[f"{ours}_mean"])
                p = float(b[pub])
                row[f"ours_{pub}"] = m
                row[f"ours_{pub}_text"] = cell_text(r, ours)
                row[f"pub_{pub}"] = p
                row[f"d_{pub}"] = m - p if not (math.isnan(m) or math.isnan(p)) else math.nan
            out.append(row)
    return pd.DataFrame(out)


def _signed(v: float, nd: int = 2) -> str:
    return "" if math.isnan(v) else f"{v:+.{nd}f}"


def _plain(v: float, nd: int = 2) -> str:
    return "" if math.isnan(v) else f"{v:.{nd}f}"


def render_compare_markdown(cmp: pd.DataFrame) -> str:
    """Ours (mean ± std, n) | published | difference, per metric that either side reports."""
    used = [pub for _, pub in COMPARED if cmp[f"pub_{pub}"].notna().any()]
    head = ["dataset", "ours", "n"]
    for pub in used:
        head += [f"{pub} ours", f"{pub} published", f"Δ{pub}"]
    head += ["published setting", "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (3 * len(used)) + ["---"] * 2)
             + "|"]
    for _, r in cmp.iterrows():
        ours = f"{STAGE1_NAMES.get(r.stage1_mode, r.stage1_mode)} + {method_label(r.method)}"
        ours += " §" if r.get("options_differ") else ""
        n = f"{r.n}" + (" †" if r.reduced else "") + (" ‡" if r.get("unstable_seeds") else "")
        cells = [r.dataset_tag, ours, n]
        for pub in used:
            nd = 3 if pub == "nll" else 2
            cells += [r[f"ours_{pub}_text"] if not math.isnan(r[f"pub_{pub}"]) else "",
                      _plain(r[f"pub_{pub}"], nd), _signed(r[f"d_{pub}"], nd)]
        pub_variant = split_method_key(r.get("pub_method") or "")[1]
        setting = ", ".join(x for x in (r.pub_backbone, r.pub_stage1, f"{r.pub_epochs} ep" if r.pub_epochs else "",
                                        f"options {pub_variant}" if pub_variant else "", r.note) if x)
        cells += [setting.replace("|", "/"), r.source.replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    foot = ("Δ = ours (mean over n seeds) - published; percent points for accuracies and ECE. Published numbers "
            "come from other code bases, schedules and sometimes backbones (see 'published setting').")
    if "options_differ" in cmp and cmp["options_differ"].astype(bool).any():
        foot += (" § = the published run used other method options than ours (ours: the options in our row's "
                 "label, none = the reference; theirs: 'options' in its setting), so Δ compares two regimes.")
    if cmp["reduced"].any():
        foot += " † = our runs used a reduced schedule: the difference says little."
    if "unstable_seeds" in cmp and cmp["unstable_seeds"].astype(bool).any():
        bad = dict.fromkeys(f"{r.dataset_tag} {STAGE1_NAMES.get(r.stage1_mode, r.stage1_mode)} + "
                            f"{method_label(r.method)} (seeds {r.unstable_seeds})"
                            for r in cmp.itertuples() if r.unstable_seeds)
        foot += f" ‡ = an unstable stage 2 ({unstable_bound_text()}) in: {', '.join(bad)}."
    if "tau_choices" in cmp:  # published tau-norm rows do not always say where tau was chosen; ours does
        tau = tau_footnote(cmp.drop_duplicates(["dataset_tag", "stage1_mode", "method"]))
        foot += f" {tau[0].upper()}{tau[1:]}." if tau else ""
    return "\n".join(lines) + "\n\n" + foot + "\n"


def render_compare_csv(cmp: pd.DataFrame) -> str:
    cols = [c for c in cmp.columns if not c.endswith("_text") and c != "tau_choices"]
    return cmp[cols].to_csv(index=False, float_format="%.6g")
