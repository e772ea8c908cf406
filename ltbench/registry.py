"""Name -> factory registries for methods and datasets, in the style of timm's ``register_model``.

Adding a method is one file in ``methods/`` that decorates its class with ``@register_method("name")``.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from .errors import LtbenchError

T = TypeVar("T")

_METHODS: dict[str, type] = {}
_DATASETS: dict[str, Callable] = {}


def _register(table: dict, kind: str, name: str) -> Callable[[T], T]:
    def deco(obj: T) -> T:
        if name in table and table[name] is not obj:
            raise ValueError(f"{kind} {name!r} is registered twice")
        table[name] = obj
        return obj
    return deco


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator: make a stage-2 method available to ``bench.py run --method NAME``."""
    return _register(_METHODS, "method", name)


def register_dataset(name: str) -> Callable[[T], T]:
    """Decorator for a dataset spec (an object with ``load(...)``)."""
    return _register(_DATASETS, "dataset", name)


def _load_builtin_methods() -> None:
    import methods  # noqa: F401  (importing the package registers every method module)


def method_names() -> list[str]:
    _load_builtin_methods()
    return sorted(_METHODS)


def get_method(name: str) -> type:
    _load_builtin_methods()
    if name not in _METHODS:
        raise LtbenchError(f"unknown method {name!r}; valid methods: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def _load_builtin_datasets() -> None:
    from . import data  # noqa: F401  (registers the dataset specs)


def dataset_names() -> list[str]:
    _load_builtin_datasets()
    return sorted(_DATASETS)


def get_dataset(name: str):
    _load_builtin_datasets()
    if name not in _DATASETS:
        raise LtbenchError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(_DATASETS))}")
    return _DATASETS[name]
