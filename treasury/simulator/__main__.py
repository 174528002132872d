"""``python -m treasury.simulator``: serve the simulator over HTTP in the foreground.

The project CLI's ``treasury simulator`` command is the usual entry point; this one needs
nothing but the simulator package, which helps when benchmarking from another process.
"""

from __future__ import annotations

import argparse
import sys

from treasury.errors import ConfigError
from treasury.simulator.app import Simulator
from treasury.simulator.faults import load_faults
from treasury.simulator.server import serve
from treasury.simulator.state import load_state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m treasury.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--state", default="config/simulator.yaml")
    parser.add_argument("--faults", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-limits", action="store_true", help="turn rate limits off")
    parser.add_argument("--persist", default=None, metavar="FILE",
                        help="keep balances and effects in this JSON file across restarts")
    args = parser.parse_args(argv)
    try:
        cfg = load_state(args.state)
        if args.no_limits:
            cfg = cfg.tuned(rate_limits={"enabled": False})
        sim = Simulator(cfg, seed=args.seed, persist_path=args.persist)
        if args.faults:
            sim.set_faults(load_faults(args.faults))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = serve(sim, host=args.host, port=args.port)
    print(f"HashKey PRO simulator on {server.url}", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
