"""Stage-2 methods, one module each. Importing this package registers them all (see ltbench.registry).

To add a method: create ``methods/<name>.py`` with a ``Method`` subclass decorated by
``@register_method("<name>")`` and add its module name to ``_MODULES`` below.
"""
import importlib

_MODULES = ["ce", "crt", "lws", "tau_norm", "swag", "srepr"]

for _m in _MODULES:
    try:
        importlib.import_module(f"{__name__}.{_m}")
    except ModuleNotFoundError as e:  # a method module not written yet
        if e.name != f"{__name__}.{_m}":
            raise
