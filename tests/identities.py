"""Test people with real keys: the shipped config plus demo identities."""

from __future__ import annotations

from pathlib import Path

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"


def signed_config_copy(target: Path) -> Path:
    """A copy of the shipped config folder whose people have demo keys (``demo-keys/``).

    Every decision is signed; in the simulator environment the runtime signs ``--as NAME``
    with NAME's demo key, so tests keep acting as people by name.
    """
    import shutil

    from treasury.people.keyring import make_demo_identities

    shutil.copytree(REPO_CONFIG, target)
    make_demo_identities(target)
    return target
