"""An in-process (and HTTP) simulator of the HashKey PRO REST API.

::

    cfg = load_state("config/simulator.yaml")
    sim = Simulator(cfg, clock=ManualClock(), seed=7)
    client = httpx.Client(transport=httpx.MockTransport(sim.handle), base_url="https://sim")
    server = serve(sim)            # the same simulator on http://127.0.0.1:<port>

Modules: ``state`` (the state file), ``ledger``/``orders``/``funding`` (the world behind one
lock), ``auth`` (signatures, timestamps, 2FA), ``ratelimit``, ``faults``, ``*_api`` (endpoint
handlers), ``app`` (routing), ``server`` (real HTTP) and ``persist`` (the world in a JSON file
shared by processes). docs/simulator.md records every
modelling choice.
"""

from __future__ import annotations

from treasury.simulator.app import Simulator
from treasury.simulator.faults import FaultRule, load_faults
from treasury.simulator.persist import persist_path_for
from treasury.simulator.server import SimulatorServer, serve
from treasury.simulator.state import SimSettings, SimulatorConfig, load_state, parse_state

__all__ = [
    "FaultRule",
    "SimSettings",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "load_faults",
    "load_state",
    "parse_state",
    "persist_path_for",
    "serve",
]
