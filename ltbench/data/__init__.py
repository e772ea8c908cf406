"""Datasets: registered specs that load a long-tailed train set and a balanced test set.

Importing this package registers every built-in dataset (see ``ltbench.registry``).
"""
from .base import LTData, TensorLTData, default_data_root  # noqa: F401
from . import cifar_lt  # noqa: F401  (registers cifar10-lt, cifar100-lt and the tiny sets)

try:  # ImageNet-LT / iNaturalist-2018 loaders, when present
    from . import file_lists  # noqa: F401
except ImportError:  # pragma: no cover
    pass
