"""Keep a store's hand-written ``findings.md`` tied to its generated numbers.

``findings.md`` is prose, so nothing regenerates it; what can be checked is that every decimal number it quotes is
one that the store's generated statistics (``stats.md``) or tables (``tables/*.md``) print, sign and digits alike.
A quoted mean that a new seed moved is then caught, by the test suite and by ``benchmarks/commit_runs.py`` when it
regenerates a store."""
from __future__ import annotations

import re
from pathlib import Path

from ..paths import iter_run_dirs

_NUMBER = re.compile(r"[+\-−]?\d+\.\d+")


def decimal_tokens(text: str) -> list[str]:
    """Every decimal number with its sign ('-' and '−' alike); a dash between two numbers is a range, not a sign."""
    out = []
    for m in _NUMBER.finditer(text):
        tok = m.group()
        if tok[0] in "+-−" and m.start() > 0 and text[m.start() - 1].isdigit():
            tok = tok[1:]
        out.append(tok.replace("-", "−"))
    return out


def printed_numbers(results: Path, findings_text: str) -> set[str]:
    """The decimal numbers the store's stats.md and tables/*.md print. A store nested in it counts too, but only one
    the findings name as ``<name>/`` (results/cifar-ldam/: the same setting under another preset, set beside the
    parent's runs); the others stay out, so their many numbers cannot make a drifted figure pass by chance."""
    named = [p.parent for p in sorted(results.glob("*/runs")) if any(iter_run_dirs(p.parent))
             and re.search(rf"(?<![\w-]){re.escape(p.parent.name)}/", findings_text)]
    corpus: set[str] = set()
    for store in [results, *named]:
        if (store / "stats.md").is_file():
            corpus |= set(decimal_tokens((store / "stats.md").read_text()))
        for f in sorted((store / "tables").glob("*.md")):
            corpus |= set(decimal_tokens(f.read_text()))
    return corpus


def unprinted_numbers(results: Path | str) -> list[str] | None:
    """The numbers ``<results>/findings.md`` quotes that no generated file of the store prints (sorted, each once);
    None when the store has no findings.md or no stats.md to check against."""
    results = Path(results)
    findings = results / "findings.md"
    if not findings.is_file() or not (results / "stats.md").is_file():
        return None
    text = findings.read_text()
    corpus = printed_numbers(results, text)
    return sorted({t for t in decimal_tokens(text) if t not in corpus})
