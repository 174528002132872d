from __future__ import annotations

from tests.runs.conftest import make_runtime

__all__ = ["make_runtime"]
