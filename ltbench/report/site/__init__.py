"""The static leaderboard site (``bench.py site``): see ``build.py``."""
from .build import build_site

__all__ = ["build_site"]
