"""``treasury validate FILE...`` (every problem, located) and ``treasury schema`` (JSON Schema)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from treasury.cli.context import AppContext, pass_app
from treasury.errors import ConfigError
from treasury.keys import KeySpec, load_key_specs
from treasury.language.spec import WorkflowSpec
from treasury.language.validate import check_files
from treasury.operations.registry import REGISTRY
from treasury.people.approvers import Approvers
from treasury.people.registry import load_people
from treasury.policy.model import check_environment, load_policy

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://treasury.invalid/schemas/workflow.schema.json"


def register(cli: click.Group) -> None:
    cli.add_command(validate)
    cli.add_command(schema)


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@pass_app
def validate(app: AppContext, files: tuple[Path, ...], as_json: bool) -> None:
    """Check workflow files and print every problem as FILE:LINE:COL: message (field).

    Key profiles, approvers and the policy come from TREASURY_CONFIG_DIR; a missing
    config file skips its checks (with a note), an invalid one is an error. Exits 0 when
    every file is valid, 2 otherwise.
    """
    try:
        keys, approvers, policy, notes = _config(app)
    except ConfigError as exc:
        # Handled here (not only by the group) so the exit code is 2 however the CLI is entered.
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    unavailable = _unset_secrets(keys)
    if unavailable and app.settings.broker_url is not None:
        # steps run on the workers: their environment, not this one, must hold the secrets
        notes.extend(f"key profile {name!r} {why} here; the workers that run its steps need it"
                     for name, why in sorted(unavailable.items()))
        unavailable = {}
    results = check_files(files, keys=keys, approvers=approvers, policy=policy, unavailable_keys=unavailable)
    bad = any(results.values())
    if as_json:
        app.print_json({
            "ok": not bad,
            "notes": notes,
            "files": [
                {"file": f, "ok": not problems,
                 "problems": [{"file": p.file, "line": p.line, "col": p.col, "path": p.path,
                               "message": p.message} for p in problems]}
                for f, problems in results.items()
            ],
        })
    else:
        for note in notes:
            click.echo(f"note: {note}", err=True)
        for f in sorted(results):
            problems = results[f]
            if not problems:
                click.echo(f"{f}: ok")
            for p in problems:
                click.echo(str(p))
        if bad:
            count = sum(len(p) for p in results.values())
            files_bad = sum(1 for p in results.values() if p)
            click.echo(f"{count} problem{'s' if count != 1 else ''} in {files_bad} "
                       f"file{'s' if files_bad != 1 else ''}", err=True)
    if bad:
        # SystemExit, not click's Exit: ``main`` runs click with standalone_mode=False, where
        # an Exit's code is returned (and dropped) rather than used.
        raise SystemExit(2)


def _unset_secrets(keys: Mapping[str, KeySpec] | None) -> dict[str, str]:
    """Profiles whose secret (or TOTP secret) variable is not set in this environment, and why."""
    out: dict[str, str] = {}
    for name, spec in (keys or {}).items():
        unset = spec.unset_variables()
        if unset:
            which = " and ".join(unset)
            out[name] = (f"reads its secret from {which}, which {'is' if len(unset) == 1 else 'are'} not set: "
                         "a run would fail when it sends")
    return out


def _config(app: AppContext) -> tuple[Mapping[str, KeySpec] | None, Approvers | None, Any, list[str]]:
    """Load keys, approvers and policy when their files exist.

    Raises:
        ConfigError: a config file exists but is invalid.
    """
    settings = app.settings
    notes: list[str] = []
    keys: Mapping[str, KeySpec] | None = None
    approvers: Approvers | None = None
    policy: Any = None
    if settings.keys_file.exists():
        keys = load_key_specs(settings.keys_file)
    else:
        notes.append(f"{settings.keys_file} not found: key profiles and permissions not checked")
    if settings.people_file.exists() or settings.people_file.with_name("approvers.yaml").exists():
        approvers = load_people(settings.people_file)
    else:
        notes.append(f"{settings.people_file} not found: approver names and groups not checked")
    if settings.policy_file.exists():
        policy = check_environment(load_policy(settings.policy_file), settings.env.value)
    else:
        notes.append(f"{settings.policy_file} not found: policy rules not checked, and no money-moving "
                     "step runs until it exists")
    return keys, approvers, policy, notes


def workflow_json_schema() -> dict[str, Any]:
    """The JSON Schema of workflow files, with ``$schema``, ``$id`` and a title."""
    body = WorkflowSpec.model_json_schema()
    # Operation names come from the registry (a layer above the workflow models), so the
    # schema offers them for completion here rather than in the models.
    op = body["$defs"]["StepSpec"]["properties"]["op"]
    op["anyOf"][0]["enum"] = sorted(REGISTRY)
    out: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "treasury workflow",
    }
    out.update({k: v for k, v in body.items() if k != "title"})
    return out


@click.command("schema")
def schema() -> None:
    """Print the JSON Schema of workflow files (point your editor's YAML plugin at it)."""
    click.echo(json.dumps(workflow_json_schema(), indent=2))


__all__ = ["register", "workflow_json_schema"]
