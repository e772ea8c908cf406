"""Stage-2 methods, one module each, discovered by ``ltbench.registry.discover_methods``.

To add a method: create ``methods/<name>.py`` with a ``ltbench.method.Method`` subclass that sets ``name``,
``label``, ``order``, ``stage1_modes`` and ``option_specs`` and implements ``fit``. Nothing else to edit.
"""
