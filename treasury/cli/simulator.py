"""``treasury simulator``: serve the HashKey PRO simulator over HTTP until Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import click

from treasury.cli.context import AppContext, pass_app
from treasury.errors import ConfigError


@click.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="port (0 picks a free one)")
@click.option("--state", "state_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="state file [default: $TREASURY_CONFIG_DIR/simulator.yaml]")
@click.option("--faults", "faults_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="fault rules (a YAML list)")
@click.option("--seed", type=int, default=None, help="seed for probabilistic fault rules")
@click.option("--no-limits", is_flag=True, help="turn the simulated rate limits off")
@click.option("--json", "as_json", is_flag=True, help="print the address as a JSON object")
@pass_app
def simulator_command(
    app: AppContext,
    host: str,
    port: int,
    state_file: Path | None,
    faults_file: Path | None,
    seed: int | None,
    no_limits: bool,
    as_json: bool,
) -> None:
    """Serve the HashKey PRO simulator over HTTP (point TREASURY_BASE_URL at it)."""
    from treasury.simulator import Simulator, load_faults, load_state, serve

    state_path = state_file or app.settings.simulator_file
    try:
        cfg = load_state(state_path)
        if no_limits:
            cfg = cfg.tuned(rate_limits={"enabled": False})
        sim = Simulator(cfg, seed=seed)
        rules = load_faults(faults_file) if faults_file else []
        sim.set_faults(rules)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None
    try:
        server = serve(sim, host=host, port=port)
    except OSError as exc:
        click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise SystemExit(2) from None
    if as_json:
        app.print_json({"url": server.url, "state": str(state_path), "faults": len(rules), "seed": seed})
    else:
        click.echo(f"HashKey PRO simulator on {server.url} (state {state_path}, {len(rules)} fault rule(s))")
        click.echo(f"use it with: export TREASURY_BASE_URL={server.url}   (Ctrl-C stops)")
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def register(cli: click.Group) -> None:
    """Add ``treasury simulator`` to the ``treasury`` group."""
    cli.add_command(simulator_command)
