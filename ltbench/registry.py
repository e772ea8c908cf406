"""Name -> class / spec registries for methods and datasets, in the spirit of timm's ``register_model``.

Methods are discovered: every module in the ``methods`` package is imported (an error in a method file is an
error naming that file, never a silently missing method), and each ``Method`` subclass that sets ``name``
registers itself when it is defined. Adding a method is one new file in ``methods/``; there is no list to edit.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, TypeVar

from .errors import LtbenchError

T = TypeVar("T")

_METHODS: dict[str, type] = {}
_DATASETS: dict[str, Callable] = {}
_DISCOVERED = False


def add_method(cls: type) -> None:
    """Called by ``Method.__init_subclass__``: two different classes may not claim one name."""
    old = _METHODS.get(cls.name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"method {cls.name!r} is defined twice: {old.__module__} and {cls.__module__}")
    _METHODS[cls.name] = cls


def register_dataset(name: str) -> Callable[[T], T]:
    """Decorator for a dataset spec (an object with ``load(...)``)."""
    def deco(obj: T) -> T:
        if name in _DATASETS and _DATASETS[name] is not obj:
            raise ValueError(f"dataset {name!r} is registered twice")
        _DATASETS[name] = obj
        return obj
    return deco


def discover_methods() -> None:
    """Import every module of the ``methods`` package once (each defines and so registers its method)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import methods
    for info in sorted(pkgutil.iter_modules(methods.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            try:
                importlib.import_module(f"methods.{info.name}")
            except Exception as e:  # a method file that does not import is named, not a bare traceback
                where = getattr(info.module_finder, "path", "methods")
                raise LtbenchError(
                    f"method file {where}/{info.name}.py does not import ({type(e).__name__}: {e}); every module in "
                    f"methods/ is imported to register its method, so fix that file (the traceback: python -c "
                    f"'import methods.{info.name}') or move it out of methods/") from e
    _DISCOVERED = True


def method_names() -> list[str]:
    """Registered methods in table order (``order``, then name)."""
    discover_methods()
    return sorted(_METHODS, key=lambda n: (_METHODS[n].order, n))


def get_method(name: str) -> type:
    discover_methods()
    if name not in _METHODS:
        raise LtbenchError(f"unknown method {name!r}; valid methods: {', '.join(method_names())}")
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
