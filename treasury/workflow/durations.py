"""Durations in workflow files: the one grammar lives in :mod:`treasury.durations` (re-exported here)."""

from __future__ import annotations

from treasury.durations import DURATION_PATTERN, MAX_DURATION, format_duration, parse_duration

__all__ = ["DURATION_PATTERN", "MAX_DURATION", "format_duration", "parse_duration"]
