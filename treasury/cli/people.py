"""``treasury people list|add-key|invite`` and ``treasury decide export|submit`` (signing away from the server)."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import click

from treasury.cli.context import AppContext, pass_app
from treasury.cli.identity import identity_option
from treasury.errors import DecisionRefused, ParameterError


@click.group("people")
def people_group() -> None:
    """The people registry (config/people.yaml): roles, groups and keys."""


@people_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def people_list(app: AppContext, as_json: bool) -> None:
    """List people with their roles, groups and key fingerprints."""
    from treasury.people.registry import load_people

    people = load_people(app.settings.people_file)
    rows: list[dict[str, Any]] = [{"id": pid, "name": p.name, "roles": sorted(p.roles), "groups": sorted(p.groups),
             "keys": [{"type": k.type, "fingerprint": k.fingerprint, "comment": k.comment} for k in p.keys]}
            for pid, p in sorted(people.persons.items())]
    if as_json:
        app.print_json({"digest": people.digest, "file": str(app.settings.people_file), "people": rows})
        return
    app.print_table(["person", "name", "roles", "groups", "keys"],
                    [(r["id"], r["name"], ", ".join(r["roles"]), ", ".join(r["groups"]),
                      "\n".join(f"{k['fingerprint']} {k['comment']}".strip() for k in r["keys"]) or "NONE")
                     for r in rows], title=f"people ({people.digest[:23]}…)")


@people_group.command("add-key")
@click.argument("name")
@click.argument("pubkey_file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def people_add_key(app: AppContext, name: str, pubkey_file: Path) -> None:
    """Register the OpenSSH public key in PUBKEY_FILE (e.g. ~/.ssh/id_ed25519.pub) for NAME."""
    from treasury.people.edit import add_key

    try:
        line = pubkey_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError("PUBKEY_FILE", f"cannot read {pubkey_file}: {exc}") from None
    fingerprint = add_key(app.settings.people_file, name, line)
    click.echo(f"{name}: key {fingerprint} added to {app.settings.people_file}")


@people_group.command("invite")
@click.argument("name")
@click.option("--ttl", default="24h", show_default=True, help="how long the link stays valid (e.g. 30m, 24h)")
@click.option("--as", "user", default=None, help="the operator who invites (checked against --identity)")
@identity_option
@pass_app
def people_invite(app: AppContext, name: str, ttl: str, user: str | None, identity: str | None) -> None:
    """Print a one-time link for NAME to enrol a passkey in the web console.

    The invitation is an operator's signed ``credential.enrol`` decision; the link is shown
    once, expires after --ttl, works once, and only its hash is stored.
    """
    from treasury.audit import append_event
    from treasury.cli.identity import decision_service, who_signs
    from treasury.durations import parse_duration
    from treasury.people.invites import create_invite, enrol_url
    from treasury.runs.signing import standalone

    try:
        lifetime = parse_duration(ttl, what="--ttl", maximum=timedelta(days=30))
    except ValueError as exc:
        raise ParameterError("--ttl", str(exc)) from None
    svc = decision_service(app, require_credentials=False)
    people = svc.ctx.approvers
    if name not in people.persons:
        raise ParameterError("NAME", f"{name!r} is not in the people registry ({app.settings.people_file})")
    operator, signer = who_signs(app, people, user, identity)
    now = app.clock.now()
    expires = (now + lifetime).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    verified = standalone(svc, "credential.enrol", operator, signer, invitee=name, expires_at=expires)
    token = create_invite(app.engine(), name, by=verified.person, ttl=lifetime, now=now, audit=append_event,
                          decision=verified.signed.doc_id)
    click.echo(f"enrolment link for {name} (shown once; valid until {expires}, single use):")
    click.echo(enrol_url(app.settings.web_origin, token))


@people_group.command("demo-keys")
@pass_app
def people_demo_keys(app: AppContext) -> None:
    """Simulator only: make a demo key (config/demo-keys/NAME, 0600) for every person without one."""
    from treasury.errors import ConfigError
    from treasury.people.keyring import make_demo_identities
    from treasury.settings import Environment

    if app.settings.env != Environment.SIMULATOR:
        raise ConfigError("demo keys are for the simulator only; register each person's own key with "
                          "`treasury people add-key NAME PUBKEY_FILE`", source="TREASURY_ENV")
    made = make_demo_identities(app.settings.config_dir)
    click.echo(f"demo identities (simulator only) for: {', '.join(made) or 'nobody (everyone has a key)'}")


@click.group("decide")
def decide_group() -> None:
    """Sign a decision on another machine: export the document, sign it there, submit it here."""


@decide_group.command("export")
@click.argument("run_id")
@click.argument("step_id", required=False)
@click.option("--as", "user", required=True, help="the person who will sign")
@click.option("--kind", type=click.Choice(["approve", "reject", "cancel", "resolve"]), default="approve",
              show_default=True)
@click.option("--comment", default=None, help="approve: a comment")
@click.option("--reason", default=None, help="reject: why")
@click.option("--outcome", type=click.Choice(["succeeded", "failed"]), default=None, help="resolve: the outcome")
@click.option("--note", default=None, help="resolve: what was checked")
@pass_app
def decide_export(app: AppContext, run_id: str, step_id: str | None, user: str, kind: str, comment: str | None,
                  reason: str | None, outcome: str | None, note: str | None) -> None:
    """Print the decision document to sign (exact bytes, no trailing newline).

    Sign it with: ssh-keygen -Y sign -n treasury -f ~/.ssh/id_ed25519 decision.json
    """
    from treasury.people.decisions import document_text
    from treasury.runs import signing

    svc = app.runtime().service
    if kind in ("approve", "reject"):
        if kind == "reject" and not reason:
            raise click.UsageError("reject needs --reason")
        doc = signing.vote_document(svc, run_id, user, kind, comment if kind == "approve" else reason)
        if step_id is not None and doc.get("step") != step_id:
            raise ParameterError("STEP", f"run {run_id} is waiting on {doc.get('step')!r}, not {step_id!r}")
    elif kind == "cancel":
        doc = signing.run_document(svc, "cancel", run_id, user)
    else:
        if not (step_id and outcome and note):
            raise click.UsageError("resolve needs STEP, --outcome and --note")
        doc = signing.run_document(svc, "resolve", run_id, user, step_id, outcome=outcome, note=note)
    click.echo(document_text(doc), nl=False)


@decide_group.command("submit")
@click.argument("signature_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--document", "document_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="the signed document (default: SIGNATURE_FILE without .sig)")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def decide_submit(app: AppContext, signature_file: Path, document_file: Path | None, as_json: bool) -> None:
    """Submit a document signed elsewhere (decision.json.sig next to decision.json)."""
    from treasury.people.decisions import SignedDecision

    doc_path = document_file or (signature_file.with_suffix("") if signature_file.suffix == ".sig" else None)
    if doc_path is None:
        raise click.UsageError("name the document with --document (the signature file does not end in .sig)")
    try:
        signed = SignedDecision(doc_path.read_text(), signature_file.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError("SIGNATURE_FILE", f"cannot read the document or signature: {exc}") from None
    state = submit(app, signed)
    if as_json:
        app.print_json(app.runtime().service.show(str(signed.parsed()["run"]), with_audit=False))
    else:
        click.echo(f"run {signed.parsed()['run']}: {state}")


def submit(app: AppContext, signed: Any) -> str:
    """Route a signed document to the service by its kind; returns the run's state."""
    svc = app.runtime().service
    doc = signed.parsed()
    run_id, person = str(doc.get("run") or ""), str(doc["person"])
    if not run_id:
        raise DecisionRefused(f"a {doc['kind']!r} document cannot be submitted here; it names no run")
    kind = doc["kind"]
    if kind == "approve":
        return str(svc.approve(run_id, person, signed=signed))
    if kind == "reject":
        return str(svc.reject(run_id, person, str(doc.get("reason") or "-"), signed=signed))
    if kind == "cancel":
        return str(svc.cancel(run_id, person, signed=signed))
    if kind == "resolve":
        return str(svc.resolve(run_id, str(doc.get("step")), user=person, outcome=str(doc.get("outcome")),
                               note=str(doc.get("note") or ""), signed=signed))
    raise DecisionRefused(f"a {kind!r} document cannot be submitted with `treasury decide submit`")


def register(cli: click.Group) -> None:
    cli.add_command(people_group)
    cli.add_command(decide_group)
