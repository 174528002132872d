"""``treasury ops``, ``treasury query``, ``treasury keys check`` and ``treasury resume-exchange``.

Parse, call the exchange library, print. ``query`` runs read-only operations only: every
write happens through a workflow, with its approvals, policy and execution record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import click

from treasury.audit import append_event
from treasury.cli.context import AppContext, pass_app
from treasury.cli.failures import infrastructure_message
from treasury.cli.identity import identity_option
from treasury.cli.keycheck import DEFAULT_CONCURRENCY, check_all, check_progress_for
from treasury.display import check_name, escape_lines
from treasury.errors import (
    AuthenticationFailed,
    Banned,
    ConfigError,
    ExchangeError,
    ExchangeHalted,
    ExchangePermissionDenied,
    NotSent,
    OutcomeUnknown,
    ParameterError,
    RateLimited,
    TreasuryError,
)
from treasury.exchange.client import HashKeyClient
from treasury.exchange.halts import HaltGuard, active_halts, describe_halt
from treasury.keys import KeySpec, load_key_specs
from treasury.models import Permission
from treasury.operations.registry import OperationSpec, get_operation, operations
from treasury.runtime.exchange import build_client, build_limiter, load_profile, redis_broker_url


def _fail(app: AppContext, exc: TreasuryError, as_json: bool) -> NoReturn:
    """Print one error (a JSON object with --json) and exit with its code (1 outcome, 2 usage)."""
    if as_json:
        detail = exc.to_dict() if isinstance(exc, ExchangeError) else {
            "error": type(exc).__name__, "message": str(exc)
        }
        app.print_json(detail)
    else:
        # Plain echo, not rich markup: messages contain brackets such as "[read]".
        line = infrastructure_message(exc, app.settings) if isinstance(exc, NotSent) else None
        click.echo(f"error: {line or escape_lines(str(exc))}", err=True)
    raise SystemExit(exc.exit_code)


def _print_table(app: AppContext, columns: Sequence[str], rows: Iterable[Sequence[Any]],
                 title: str | None = None) -> None:
    app.print_table(columns, rows, title=title)


def _client(app: AppContext) -> HashKeyClient:
    return build_client(app.settings, clock=app.clock, engine=app.engine(), audit=append_event)


def _parse_assignments(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(pair, "must be written name=value")
        if name in out:
            raise ParameterError(name, "is given twice")
        out[name] = value
    return out


# --------------------------------------------------------------------------- ops


@click.command("ops")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@pass_app
def ops_command(app: AppContext, as_json: bool) -> None:
    """List operations with their permission, rate class and retry strategy."""
    specs = list(operations())
    if as_json:
        app.print_json([spec.describe() for spec in specs])
        return
    _print_table(
        app,
        ("name", "method", "path", "permission", "rate class", "weight", "retry strategy", "writes"),
        [
            (s.name, s.method, s.path, s.permission.value, s.rate_class.value, s.weight,
             s.retry_strategy.value, "yes" if s.mutates else "")
            for s in specs
        ],
    )


# --------------------------------------------------------------------------- query


def _print_result(app: AppContext, spec: OperationSpec, data: Any) -> None:
    table = spec.shown.table(data) if spec.shown is not None else None
    if spec.shown is not None and table is not None:
        rows, title = table
        _print_table(app, spec.shown.columns, rows, title=title)
        return
    op_name = spec.name
    if isinstance(data, list) and data and all(isinstance(row, dict) for row in data):
        columns: list[str] = []
        for row in data:
            columns.extend(k for k in row if k not in columns and not isinstance(row[k], dict | list))
        _print_table(app, columns, [[row.get(c) for c in columns] for row in data], title=op_name)
        return
    app.print_json(data)


@click.command("query")
@click.argument("op_name", metavar="OP")
@click.argument("assignments", nargs=-1, metavar="[NAME=VALUE]...")
@click.option("--key", "profile_name", required=True, help="key profile from keys.yaml")
@click.option("--json", "as_json", is_flag=True, help="print the exchange's JSON answer")
@pass_app
def query_command(
    app: AppContext, op_name: str, assignments: tuple[str, ...], profile_name: str, as_json: bool
) -> None:
    """Run one read-only operation OP with key profile --key and print the answer.

    Write operations are refused: they only run inside workflows.
    """
    try:
        app.require_config()
        spec = get_operation(op_name)
        if spec.mutates:
            raise ParameterError(
                "OP",
                f"must be a read-only operation; {op_name!r} changes exchange state. Writes happen only "
                "through workflows (`treasury run FILE`), with approvals, policy and audit",
            )
        params = _parse_assignments(assignments)
        profile = load_profile(app.settings, profile_name)
        with _client(app) as client:
            response = client.call(spec, profile, params)
    except TreasuryError as exc:
        _fail(app, exc, as_json)
    if as_json:
        app.print_json(response.data)
    else:
        _print_result(app, spec, response.data)


# --------------------------------------------------------------------------- keys check


# A permission the exchange lets us test without an effect: a signed read that needs it. HashKey
# does not list a key's permissions (checkApiKey gives only the account type), and withdrawals,
# fiat withdrawals, transfers and orders cannot be tried without moving money.
PERMISSION_PROBES: dict[Permission, tuple[str, dict[str, str]]] = {
    Permission.READ: ("balances", {}),
    Permission.WHITELIST: ("deposit_address", {"coin": "USDT", "chainType": "ETH"}),
}


def _probe(client: HashKeyClient, profile: Any, permission: Permission) -> tuple[str, Any]:
    """``granted`` (with the answer), ``refused`` (the exchange said the key lacks it) or ``unknown``."""
    op, params = PERMISSION_PROBES[permission]
    try:
        return "granted", client.call(op, profile, params).data
    except ExchangePermissionDenied:
        return "refused", None
    except (AuthenticationFailed, ExchangeHalted, RateLimited, Banned, NotSent, OutcomeUnknown):
        raise  # about the key or the connection, not this permission: the whole check fails
    except TreasuryError as exc:
        return f"unknown ({type(exc).__name__})", None


def _check_profile(client: HashKeyClient, app: AppContext, name: str, spec: KeySpec) -> dict[str, Any]:
    result: dict[str, Any] = {
        "profile": name,
        "api_key": spec.api_key,
        "permissions": sorted(p.value for p in spec.permissions),
        "ok": False,
        "account_type": None,
        "assets": None,
        "permissions_checked": {},
        "error": None,
        "warning": None,
    }
    warnings: list[str] = []
    try:
        profile = spec.resolve(env=app.settings.env.value)
        answer = client.call("check_api_key", profile)
        account_type = answer.data.get("accountType") if isinstance(answer.data, dict) else None
        result["account_type"] = account_type
        checked: dict[str, str] = {}
        for permission in sorted(profile.permissions, key=lambda p: list(Permission).index(p)):
            if permission not in PERMISSION_PROBES:
                checked[permission.value] = "not checkable"
                continue
            verdict, data = _probe(client, profile, permission)
            checked[permission.value] = verdict
            if verdict == "refused":
                warnings.append(f"claims {permission.value!r} in keys.yaml, but the exchange refused it "
                                f"({PERMISSION_PROBES[permission][0]}: no permission); give the key that "
                                "permission on the exchange, or drop it from the profile")
            if permission is Permission.READ and isinstance(data, dict):
                result["assets"] = sorted(b.get("asset") for b in data.get("balances", []))
        result["permissions_checked"] = checked
        result["ok"] = True
        if account_type is not None and account_type != "master" and spec.fund_statement:
            # only a master key may read balanceFlow, the one lookup that finds a transfer
            warnings.append("not a master key, so it cannot read the fund statement: set "
                            "fund_statement: false on this profile, so that its transfers note both "
                            "accounts' balances before sending")
    except TreasuryError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["warning"] = "; ".join(warnings) or None
    return result


@click.group("keys")
def keys_group() -> None:
    """Key profiles (config/keys.yaml)."""


@keys_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@click.option("--concurrency", type=click.IntRange(1, 64), default=DEFAULT_CONCURRENCY, show_default=True,
              help="how many keys are checked at once (each within its own rate budget)")
@pass_app
def keys_check_command(app: AppContext, as_json: bool, concurrency: int) -> None:
    """Check every key profile against the exchange: the key, the signature and a signed read.

    Warns when a profile claims a permission that the exchange refuses, for each permission a
    signed call without effects can test (read, whitelist); the others are listed as not checkable.
    Different keys are checked side by side, each within its own rate budget, with progress on
    standard error.
    """
    try:
        app.require_config()
        specs = load_key_specs(app.settings.keys_file)
        client = _client(app)
    except TreasuryError as exc:
        _fail(app, exc, as_json)
    with client:
        results = check_all(list(specs), lambda name: _check_profile(client, app, name, specs[name]),
                            check_progress_for(app.err_console, quiet_lines=as_json),
                            concurrency=concurrency)
    if as_json:
        app.print_json(results)
    else:
        _print_table(
            app,
            ("profile", "api key", "permissions", "result", "detail"),
            [
                (r["profile"], r["api_key"], ",".join(r["permissions"]), "ok" if r["ok"] else "FAILED",
                 (f"{r['account_type']} key; assets: {', '.join(r['assets'] or [])}; permissions: "
                  + ", ".join(f"{p} {v}" for p, v in r["permissions_checked"].items())
                  + (f"; warning: {r['warning']}" if r["warning"] else "")) if r["ok"] else r["error"])
                for r in results
            ],
        )
    if not all(r["ok"] for r in results):
        raise SystemExit(1)


# --------------------------------------------------------------------------- resume


@click.command("resume-exchange")
@click.option("--as", "user", default=None, help="the operator resuming traffic (checked against --identity)")
@identity_option
@click.option("--json", "as_json", is_flag=True, help="print a JSON object")
@pass_app
def resume_exchange_command(app: AppContext, user: str | None, identity: str | None, as_json: bool) -> None:
    """Lift the host-wide exchange ban (after a 418) in the database and in Redis: a signed decision."""
    try:
        if user is not None and not user.strip():
            raise ParameterError("--as", "must name a person")
        if user is not None:
            check_name(user, "--as")
        from treasury.cli.identity import decision_service, who_signs
        from treasury.runs.signing import standalone

        service = decision_service(app)
        person, signer = who_signs(app, service.ctx.approvers, user, identity)
        user = standalone(service, "exchange.resume", person, signer, halt="banned").person
        engine = app.engine()
        with engine.connect() as conn:
            before = [h for h in active_halts(conn, app.clock.now()) if h["kind"] == "banned"]
        guard = build_limiter(app.settings, app.clock, engine=engine, audit=append_event)
        if not isinstance(guard, HaltGuard):  # pragma: no cover - an engine always gives a guard
            raise ConfigError("the limiter has no database guard")
        lifted = guard.resume_count(user)
    except TreasuryError as exc:
        _fail(app, exc, as_json)
    bans = [describe_halt(h) for h in before]
    out = {
        "resumed_by": user,
        "lifted": lifted,
        "bans": bans,
        "redis": redis_broker_url(app.settings) is not None,
    }
    if as_json:
        app.print_json(out)
    elif lifted:
        click.echo(f"exchange traffic resumed by {user}; lifted: " + "; ".join(bans))
    else:
        click.echo(f"no ban was recorded in the database; shared limiter cleared by {user}")


def register(cli: click.Group) -> None:
    """Add the exchange commands to the ``treasury`` group."""
    cli.add_command(ops_command)
    cli.add_command(query_command)
    cli.add_command(keys_group)
    cli.add_command(resume_exchange_command)
