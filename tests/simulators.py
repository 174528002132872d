"""The shipped simulator served over HTTP for tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from treasury.simulator import Simulator, load_state
from treasury.simulator.server import SimulatorServer, serve

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config"


def serve_without_rate_limits(folder: Path) -> SimulatorServer:
    """The shipped simulator on a free loopback port, its server-side rate limits off.

    The simulator counts a request against its limit when it processes it, which with a
    ``latency`` fault is seconds after it arrived, so the request that follows a held one would
    be refused (and its key suspended for a minute): an artefact of the fault. The client's own
    limiter still paces requests. ``folder`` receives the state file. Call ``shutdown()`` after.
    """
    data = yaml.safe_load((REPO_CONFIG / "simulator.yaml").read_text())
    data.setdefault("settings", {}).setdefault("rate_limits", {})["enabled"] = False
    state = folder / "simulator.yaml"
    state.write_text(yaml.safe_dump(data))
    return serve(Simulator(load_state(state)), port=0)
