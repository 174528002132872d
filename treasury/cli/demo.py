"""``treasury demo``: the main job on the embedded default (simulator, SQLite, inline).

It runs the example workflows through their demo cases (including approvals, a refused
self-approval and a policy refusal), then prints the runs, the audit trail and the
result of verifying the audit chain.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import click

import treasury
from treasury.cli.context import AppContext, pass_app
from treasury.settings import Environment, Settings

DEMO_WINDOW_FROM = 'days: [MON, TUE, WED, THU, FRI], hours: "09:00-17:00"'
DEMO_WINDOW_TO = 'days: [MON, TUE, WED, THU, FRI, SAT, SUN], hours: "00:00-24:00"'


def demo_sources() -> tuple[Path, Path]:
    """The shipped config and workflows: inside the wheel, or at the repository root."""
    pkg = Path(treasury.__file__).parent
    packaged = pkg / "_demo"
    root = packaged if packaged.is_dir() else pkg.parent
    config, workflows = root / "config", root / "workflows"
    if not (config / "keys.yaml").is_file() or not workflows.is_dir():
        raise click.ClickException(f"demo files not found under {root}; reinstall treasury")
    return config, workflows


def prepare(target: Path) -> tuple[Path, Path]:
    """Copy the demo files into ``target`` unless they are already there (so edits are kept)."""
    config_src, workflows_src = demo_sources()
    config, workflows = target / "config", target / "workflows"
    if not config.exists():
        shutil.copytree(config_src, config)
        for secret in (config / "secrets").glob("*.secret"):
            secret.chmod(0o600)  # a checkout gives 0644; a secret is its owner's only
        policy = config / "policy.yaml"
        if policy.exists():
            text = policy.read_text()
            if DEMO_WINDOW_FROM in text:
                # the demo runs at any hour; the shipped policy keeps Hong Kong business hours
                policy.write_text(text.replace(DEMO_WINDOW_FROM, DEMO_WINDOW_TO).replace(
                    "# Fiat payouts only in Hong Kong business hours",
                    "# demo copy: widened to every hour so the demo runs any time. The shipped\n"
                    "  # config/policy.yaml allows fiat payouts only in Hong Kong business hours"))
    if not workflows.exists():
        shutil.copytree(workflows_src, workflows)
    # demo identities: a key (0600) for each demo person, registered in the copy's people.yaml;
    # the simulator signs every demo decision with them
    from treasury.people.keyring import make_demo_identities

    make_demo_identities(config)
    return config, workflows


DB_NAME = "treasury.db"
DEFAULT_DIR = Path("treasury-demo")
# what a demo run leaves beside its config and workflows: the database (with SQLite's journal
# files) and the in-process simulator's world with its lock file
# the database, the simulator's state, and the audit checkpoints (a directory) with the key that
# signed them: a fresh database starts a new audit chain, which old checkpoints would refuse
STATE_SUFFIXES = ("", "-wal", "-shm", ".simulator.json", ".simulator.json.lock", ".checkpoints", ".checkpoints.key")


def kept_state(target: Path) -> list[Path]:
    """The files of an earlier demo in ``target`` that a new run would have to delete."""
    db = target / DB_NAME
    return [path for path in (Path(f"{db}{suffix}") for suffix in STATE_SUFFIXES) if path.exists()]


def _describe(path: Path) -> str:
    """One file of a demo's state, with what it holds."""
    if path.name == DB_NAME:
        import sqlite3

        try:
            con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)  # read only
            try:
                n_runs = con.execute("select count(*) from runs").fetchone()[0]
                n_events = con.execute("select count(*) from audit_events").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            return f"{path} (the database)"
        return f"{path} (the database: {n_runs} runs, {n_events} audit events)"
    if path.name.endswith(".simulator.json"):
        return f"{path} (the simulator's balances, orders, transfers and withdrawals)"
    if path.name.endswith(".checkpoints"):
        return f"{path}/ (the audit chain's signed checkpoints)"
    if path.name.endswith(".checkpoints.key"):
        return f"{path} (the key that signed the checkpoints)"
    return str(path)


class DemoExists(click.ClickException):
    """The folder already holds a demo's data; nothing was deleted."""

    exit_code = 2

    def __init__(self, target: Path, existing: list[Path]) -> None:
        self.target = target
        self.existing = existing
        listed = "".join(f"\n  {_describe(p)}" for p in existing)
        folder = str(target)
        super().__init__(
            f"{folder} already holds an earlier demo's data, which the demo never deletes:{listed}\n"
            f"To look at it: cd {folder} && treasury runs (or treasury audit verify).\n"
            f"To run the demo again, pick a new folder (treasury demo --dir OTHER), or delete the "
            f"files above first with: treasury demo --dir {folder} --reset"
        )


def reset_state(target: Path, *, echo: Any = click.echo) -> list[Path]:
    """Delete an earlier demo's database and simulator state in ``target``, naming each file first.

    The config and workflow files are kept (with any edits). Returns the files deleted.
    """
    existing = kept_state(target)
    if not existing:
        echo(f"--reset: {target} holds no demo data; nothing to delete", err=True)
        return []
    echo(f"--reset deletes the earlier demo's data in {target} (config/ and workflows/ are kept):", err=True)
    for path in existing:
        echo(f"  {_describe(path)}", err=True)
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return existing


def run_demo(target: Path, *, echo: Any = click.echo) -> tuple[bool, dict[str, Any]]:
    """Run every demo case in ``target``; returns (all as expected, a JSON-ready summary).

    Raises:
        DemoExists: ``target`` already holds a demo's database or simulator state (nothing is
            deleted; see :func:`reset_state`).
    """
    from treasury.audit import query_events, verify_chain
    from treasury.runs.cases import run_all
    from treasury.runtime import build_runtime

    config, workflows = prepare(target)
    db = target / DB_NAME
    existing = kept_state(target)
    if existing:  # a library caller gets the same protection as the command
        raise DemoExists(target, existing)
    # private from the start; SQLite gives -wal and -shm the database's mode (the simulator's
    # state file is written 0600 by itself)
    os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
    settings = Settings(env=Environment.SIMULATOR, base_url=None, config_dir=config,
                        database_url=f"sqlite:///{db}", broker_url=None, workflows_dir=workflows,
                        reconcile_deadline_seconds=10,
                        # in-process: no request outlives its call; settle is the minimum (1.2 s)
                        http_timeout_seconds=0.5, recv_window_ms=500, settle_margin_seconds=0.2)
    rt = build_runtime(settings)
    results = run_all(rt, workflows, demo_only=True)
    runs = rt.service.list(limit=1000)
    events = list(query_events(rt.engine))
    verdict = verify_chain(rt.engine)
    summary = {
        "dir": str(target),
        "cases": [
            {"workflow": r.workflow, "case": r.case, "run_id": r.run_id, "state": r.state, "steps": r.steps,
             "effects": r.effects, "refusals": r.refusals, "error": r.error, "as_expected": r.ok,
             "mismatches": r.mismatches}
            for r in results
        ],
        "runs": runs,
        "audit": {"events": len(events), "ok": verdict.ok, "head_seq": verdict.head_seq,
                  "head_hash": verdict.head_hash},
    }
    return all(r.ok for r in results) and verdict.ok and bool(results), summary | {"_events": events}


@click.command("demo")
@click.option("--dir", "target", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"the folder for the demo's config, workflows and database (default: ./{DEFAULT_DIR})")
@click.option("--reset", is_flag=True,
              help="delete an earlier demo's database and simulator state in the folder first (lists them)")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def demo_cmd(app: AppContext, target: Path | None, reset: bool, as_json: bool) -> None:
    """Run the example workflows on the embedded simulator and print runs and audit trail.

    The files stay in the folder for you to inspect and edit. Run again into a folder that
    already holds a demo's data, it refuses (exit 2) and deletes nothing, unless --reset.
    """
    work = target if target is not None else DEFAULT_DIR
    work.mkdir(parents=True, exist_ok=True)
    if reset:
        reset_state(work)
    existing = kept_state(work)
    if existing:
        raise DemoExists(work, existing)
    ok, summary = run_demo(work)
    events = summary.pop("_events")
    if as_json:
        app.print_json(summary)
    else:
        _print(app, summary, events)
        click.echo(f"\nthe demo's files are in {work}: cd {work} && treasury runs")
    if not ok:
        raise SystemExit(1)


def _print(app: AppContext, summary: dict[str, Any], events: list[Any]) -> None:
    click.echo("treasury demo: in-process HashKey PRO simulator, SQLite, inline execution")
    click.echo(f"files: {summary['dir']}")
    click.echo(f"every decision is signed; the people are DEMO identities with keys made for this demo "
               f"in {summary['dir']}/config/demo-keys (simulator only, never for real money)\n")
    for c in summary["cases"]:
        mark = "ok " if c["as_expected"] else "UNEXPECTED"
        click.echo(f"[{mark}] {c['workflow']}: {c['case']}")
        click.echo(f"      run {c['run_id']} -> {c['state']}  steps {c['steps']}  effects {c['effects']}")
        for r in c["refusals"]:
            click.echo(f"      refused as expected: {r}")
        if c["error"]:
            click.echo(f"      reason: {c['error']}")
        for m in c["mismatches"]:
            click.echo(f"      MISMATCH: {m}")
    click.echo("")
    app.print_table(["run", "workflow", "state", "requested by", "created"],
                    [(r["id"], r["workflow"], r["state"], r["requested_by"], r["created_at"])
                     for r in summary["runs"]], title="runs")
    app.print_table(["seq", "actor", "run", "step", "event"],
                    [(e.seq, e.actor, e.run_id or "", e.step_id or "", e.type) for e in events],
                    title="audit trail")
    a = summary["audit"]
    status = "verifies" if a["ok"] else "is BROKEN"
    click.echo(f"audit chain {status}: {a['events']} events, head seq {a['head_seq']} hash {a['head_hash']}")


def register(cli: click.Group) -> None:
    cli.add_command(demo_cmd)
