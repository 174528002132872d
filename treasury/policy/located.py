"""Moved to :mod:`treasury.located` (keys.yaml and other config files use it too); kept for imports."""

from __future__ import annotations

from treasury.located import Loc, LocatedDocument, compose, load_located, raise_problems

__all__ = ["Loc", "LocatedDocument", "compose", "load_located", "raise_problems"]
