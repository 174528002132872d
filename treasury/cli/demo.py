"""``treasury demo``: the main job on the embedded default (simulator, SQLite, inline).

It runs the example workflows through their demo cases (including approvals, a refused
self-approval and a policy refusal), then prints the runs, the audit trail and the
result of verifying the audit chain.
"""

from __future__ import annotations

import shutil
import tempfile
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


def run_demo(target: Path, *, echo: Any = click.echo) -> tuple[bool, dict[str, Any]]:
    """Run every demo case in ``target``; returns (all as expected, a JSON-ready summary)."""
    from treasury.audit import query_events, verify_chain
    from treasury.runtime import build_runtime
    from treasury.workflow.cases import run_all

    config, workflows = prepare(target)
    db = target / "treasury.db"
    for suffix in ("", "-wal", "-shm", ".simulator.json"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    settings = Settings(env=Environment.SIMULATOR, base_url=None, config_dir=config,
                        database_url=f"sqlite:///{db}", broker_url=None, workflows_dir=workflows,
                        settle_seconds=0.2, reconcile_deadline_seconds=10)
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
              help="keep the demo's config, workflows and database in this folder")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def demo_cmd(app: AppContext, target: Path | None, as_json: bool) -> None:
    """Run the example workflows on the embedded simulator and print runs and audit trail."""
    tmp = None
    if target is None:
        tmp = tempfile.mkdtemp(prefix="treasury-demo-")
        work = Path(tmp)
    else:
        target.mkdir(parents=True, exist_ok=True)
        work = target
    try:
        ok, summary = run_demo(work)
        events = summary.pop("_events")
        if as_json:
            app.print_json(summary)
        else:
            _print(app, summary, events)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
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
