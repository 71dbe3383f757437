"""The ``instrumentd`` command and its subscribers: classify, dashboard, tail, record."""

from .cli import main

__all__ = ["main"]
