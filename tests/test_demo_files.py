"""`treasury demo` keeps what it writes private: its database and the key secrets are 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from treasury.cli.demo import run_demo

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_demo_database_and_secret_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # what most shells have: new files 0644 unless made private on purpose
    try:
        ok, _summary = run_demo(tmp_path, echo=lambda *_a, **_k: None)
    finally:
        os.umask(old)
    assert ok
    secrets = sorted((tmp_path / "config" / "secrets").glob("*.secret"))
    assert secrets, "the demo copies the simulator's key secrets"
    private = [tmp_path / "treasury.db", *secrets]
    private += [p for p in tmp_path.glob("treasury.db*") if p.is_file()]  # -wal, -shm, simulator state
    assert {str(p): f"{_mode(p):04o}" for p in private} == {str(p): "0600" for p in private}
