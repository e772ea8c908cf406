"""Typed method options: each method declares its options as data; values are coerced and checked here, once.

A value arrives as a Python object from a preset (TOML gives bool / int / float / str / list) or as a string from
``--option KEY=VALUE``. ``Option.coerce`` turns both into the declared type or raises ``LtbenchError`` naming the
method, the option and what is allowed, so ``balanced=False`` (a string) can never behave as true and
``bn=recomput`` can never fall back to a default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import LtbenchError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
TYPES = ("bool", "int", "float", "str", "floats")


@dataclass(frozen=True)
class Option:
    """One method option: ``type`` is one of bool, int, float, str, floats (a non-empty list of floats).

    ``choices`` restricts str values; ``low`` / ``high`` bound numbers (inclusive unless ``low_open`` /
    ``high_open``); ``nullable`` allows ``None`` (written ``none`` or ``null`` on the command line).
    """

    name: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"option {self.name}: unknown type {self.type!r}")

    def describe(self) -> str:
        """``type, range or choices, default`` for ``bench.py list``."""
        parts = [self.type]
        if self.choices:
            parts.append("|".join(self.choices))
        if self.low is not None or self.high is not None:
            lo = "(" if self.low_open or self.low is None else "["
            hi = ")" if self.high_open or self.high is None else "]"
            parts.append(f"{lo}{'-inf' if self.low is None else _num(self.low)}, "
                         f"{'inf' if self.high is None else _num(self.high)}{hi}")
        if self.nullable:
            parts.append("or none")
        return ", ".join(parts) + f"; default {_show(self.default)}"

    def coerce(self, value: Any, where: str) -> Any:
        """``value`` as the declared type, or ``LtbenchError`` saying what ``where``'s option accepts."""
        bad = lambda why: LtbenchError(  # noqa: E731
            f"{where}: option {self.name}={value!r} {why}; expected {self.describe()}")
        spelled_none = isinstance(value, str) and value.strip().lower() in ("none", "null")
        if value is None or (spelled_none and (self.nullable or self.type != "str")):
            if self.nullable:
                return None
            raise bad("may not be empty")
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise bad("is not a boolean (true / false)")
        if self.type == "str":
            if not isinstance(value, str):
                raise bad("is not a string")
            if self.choices and value not in self.choices:
                raise bad(f"is not one of {', '.join(self.choices)}")
            return value
        if self.type == "floats":
            items = value.split(",") if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not items:
                raise bad("is not a non-empty list of numbers")
            return [self._number(v, float, bad) for v in items]
        return self._number(value, int if self.type == "int" else float, bad)

    def _number(self, value: Any, kind: type, bad) -> Any:
        if isinstance(value, bool):
            raise bad("is a boolean, not a number")
        if isinstance(value, str):
            try:
                value = kind(value.strip()) if kind is int else float(value.strip())
            except ValueError:
                raise bad(f"is not {'an integer' if kind is int else 'a number'}") from None
        if kind is int and not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise bad("is not an integer")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("is not a finite number")
        value = kind(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad("is out of range")
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise bad("is out of range")
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list):
        return ",".join(_num(x) for x in v) if len(v) <= 4 else f"{_num(v[0])},...,{_num(v[-1])} ({len(v)} values)"
    return "none" if v is None else str(v)


def resolve_options(declared: tuple[Option, ...], given: dict[str, Any], where: str) -> dict[str, Any]:
    """Every declared option with its coerced value (``given`` over the defaults); unknown keys are an error."""
    by_name = {o.name: o for o in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        valid = ", ".join(sorted(by_name)) or "none"
        raise LtbenchError(f"{where}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    return {o.name: (o.coerce(given[o.name], where) if o.name in given else o.default) for o in declared}


def parse_cli_options(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings into a dict of raw strings (typed later, by the method's declaration)."""
    out: dict[str, str] = {}
    for p in pairs:
        if "=" not in p or not p.split("=", 1)[0].strip():
            raise LtbenchError(f"--option {p!r}: use KEY=VALUE (e.g. --option alpha=0.5)")
        k, v = p.split("=", 1)
        if k.strip() in out:
            raise LtbenchError(f"--option {k.strip()} is given twice")
        out[k.strip()] = v
    return out
