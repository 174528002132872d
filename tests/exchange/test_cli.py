"""``treasury ops``, ``query``, ``keys check`` and ``resume-exchange`` against the simulator
served over real HTTP, with the config folder copied to a temporary directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import redis
from click.testing import CliRunner, Result

from tests.exchange.conftest import CONFIG_DIR
from treasury.cli import ops
from treasury.cli.context import AppContext
from treasury.clock import SystemClock
from treasury.exchange.halts import HaltGuard, active_halts
from treasury.exchange.ratelimit import LocalRateLimiter, RedisRateLimiter
from treasury.operations.registry import REGISTRY
from treasury.people.keyring import make_demo_identities
from treasury.settings import RateLimits, Settings
from treasury.simulator import Simulator, serve
from treasury.simulator.state import load_state

# Both sides at 50 queries/s keep a test quick; at 2/s each weight-5 read waits about a second.
QUICK = pytest.mark.parametrize("sim_limits", [{"query": 50}])


class Counting:
    """The simulator with a request counter in front (what reached the exchange)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def process(self, req: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.paths.append(req.path)
        return self.sim.process(req, **kwargs)


@pytest.fixture
def sim_limits() -> dict[str, Any]:
    """The served simulator's rate limits (a test may parametrize this name to change them)."""
    return {}


@pytest.fixture
def served(sim_limits: dict[str, Any]) -> Iterator[Counting]:
    cfg = load_state(CONFIG_DIR / "simulator.yaml").tuned(rate_limits=sim_limits)
    counting = Counting(Simulator(cfg))
    server = serve(counting)  # type: ignore[arg-type]
    counting.url = server.url  # type: ignore[attr-defined]
    yield counting
    server.shutdown()


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    target.mkdir()
    shutil.copy(CONFIG_DIR / "keys.yaml", target / "keys.yaml")
    shutil.copy(CONFIG_DIR / "simulator.yaml", target / "simulator.yaml")
    shutil.copytree(CONFIG_DIR / "secrets", target / "secrets")
    # resume-exchange is a signed decision by an operator: the people, with demo keys
    shutil.copy(CONFIG_DIR / "people.yaml", target / "people.yaml")
    make_demo_identities(target)
    return target


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config_dir: Path, served: Counting) -> dict[str, str]:
    """Settings for the CLI: served simulator, copied config, a database in tmp_path."""
    values = {
        "TREASURY_BASE_URL": served.url,  # type: ignore[attr-defined]
        "TREASURY_CONFIG_DIR": str(config_dir),
        "TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 'treasury.db'}",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    # The host-wide limiter keeps its file in the temp folder: keep it inside this test.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return values


def run(*args: str) -> Result:
    """Invoke through a group holding only these commands, as `treasury` registers them."""
    group = click.Group("treasury")
    ops.register(group)
    return CliRunner().invoke(group, list(args), obj=AppContext(settings=Settings()), catch_exceptions=False)


# ------------------------------------------------------------------ ops


def test_ops_json_lists_every_operation() -> None:
    result = run("ops", "--json")
    assert result.exit_code == 0
    listed = json.loads(result.output)
    assert [op["name"] for op in listed] == list(REGISTRY)
    for op in listed:
        assert {"name", "method", "path", "permission", "rate_class", "retry_strategy"} <= set(op)
    withdraw = next(op for op in listed if op["name"] == "withdraw")
    assert withdraw["permission"] == "withdraw" and withdraw["retry_strategy"] == "reconcile_then_escalate"


def test_ops_table_is_not_squeezed_when_piped() -> None:
    result = run("ops")
    assert result.exit_code == 0
    assert "whitelist_wallet_signing" in result.output and "reconcile_then_escalate" in result.output
    assert "/api/v1/account/fiat/withdraw" in result.output


# ------------------------------------------------------------------ query


def test_query_balances_json(env: dict[str, str], served: Counting) -> None:
    result = run("query", "balances", "--key", "ops-read", "--json")
    assert result.exit_code == 0, result.output
    balances = {b["asset"]: b["total"] for b in json.loads(result.output)["balances"]}
    assert balances["USDT"] == "250000" and balances["BTC"] == "3"
    assert served.paths == ["/api/v1/time", "/api/v1/account"]  # the clock is measured first


@QUICK
def test_query_table_and_parameters(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREASURY_RATE_LIMITS__QUERY", "50")
    result = run("query", "balances", "--key", "ops-read")
    assert result.exit_code == 0, result.output
    assert "USDT" in result.output and "250000" in result.output
    result = run("query", "account_types", "--key", "ops-read")
    assert "Custody Account" in result.output
    result = run("query", "open_orders", "--key", "ops-read", "symbol=BTCUSDT", "limit=5", "--json")
    assert result.exit_code == 0 and json.loads(result.output) == []


@pytest.mark.parametrize("op", ["withdraw", "spot_order", "cancel_order", "asset_transfer", "fiat_withdraw"])
def test_query_refuses_writes_before_anything_else(env: dict[str, str], served: Counting, op: str) -> None:
    result = run("query", op, "--key", "no-such-profile", "coin=USDT", "quantity=1")
    assert result.exit_code == 2
    assert "read-only" in result.output and "workflows" in result.output
    assert served.paths == []


def test_query_usage_errors_exit_2(env: dict[str, str], config_dir: Path, served: Counting) -> None:
    result = run("query", "balances", "--key", "nobody")
    assert result.exit_code == 2 and "unknown key profile 'nobody'" in result.output
    assert "ops-read" in result.output  # known profiles are listed
    result = run("query", "no_such_op", "--key", "ops-read")
    assert result.exit_code == 2 and "unknown operation" in result.output
    result = run("query", "balances", "--key", "ops-read", "accountId")
    assert result.exit_code == 2 and "name=value" in result.output
    result = run("query", "balances", "--key", "ops-read", "accountId=abc")
    assert result.exit_code == 2 and "accountId" in result.output
    result = run("query", "deposit_address", "--key", "ops-read", "coin=USDT", "chainType=ETH")
    assert result.exit_code == 2 and "whitelist" in result.output  # the profile lacks the permission

    keys = config_dir / "keys.yaml"
    keys.write_text(keys.read_text() + "  envkey: {api_key: demo-read, secret_env: TREASURY_SECRET_ENVKEY, "
                    "permissions: [read]}\n")
    result = run("query", "balances", "--key", "envkey")
    assert result.exit_code == 2 and "TREASURY_SECRET_ENVKEY is not set" in result.output
    assert served.paths == []


def test_query_exchange_error_is_one_line_exit_1(env: dict[str, str]) -> None:
    result = run("query", "order", "--key", "ops-read", "orderId=123456")
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "NotFound" not in line  # plain words, with code and msg
    assert "code=0211" in line and line.startswith("error: ")
    result = run("query", "order", "--key", "ops-read", "orderId=123456", "--json")
    assert result.exit_code == 1 and json.loads(result.output)["error"] == "NotFound"


def test_treasury_entry_point_end_to_end(env: dict[str, str], tmp_path: Path) -> None:
    """The installed `treasury` command, as a user runs it against `treasury simulator`."""
    proc = subprocess.run(
        [sys.executable, "-m", "treasury.cli.main", "query", "balances", "--key", "ops-read", "--json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["balances"]


def test_consecutive_invocations_share_the_budget(env: dict[str, str], served: Counting) -> None:
    """Two quick invocations must not earn a 429: the host limiter remembers the first one."""
    start = time.monotonic()
    for _ in range(2):
        result = run("query", "balances", "--key", "ops-read", "--json")
        assert result.exit_code == 0, result.output
    assert time.monotonic() - start >= 1.0  # the second one waited for the window
    assert served.sim.state()["rate_limits"]["suspended"] == {}


# ------------------------------------------------------------------ keys check


@QUICK
def test_keys_check_all_profiles(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREASURY_RATE_LIMITS__QUERY", "50")
    result = run("keys", "check", "--json")
    assert result.exit_code == 0, result.output
    report = {r["profile"]: r for r in json.loads(result.output)}
    assert set(report) == {"ops-read", "trading", "transfers", "withdrawals", "fiat", "whitelisting"}
    assert all(r["ok"] and r["account_type"] == "master" for r in report.values())
    assert report["fiat"]["assets"] == ["HKD", "USD"]


@QUICK
def test_keys_check_reports_failures_and_exits_1(env: dict[str, str], config_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREASURY_RATE_LIMITS__QUERY", "50")
    (config_dir / "secrets" / "trading.secret").write_text("wrong-secret\n")
    keys = config_dir / "keys.yaml"
    keys.write_text(keys.read_text() + "  unset: {api_key: demo-read, secret_env: TREASURY_SECRET_UNSET, "
                    "permissions: [read]}\n  stranger: {api_key: nobody, secret_env: TREASURY_SECRET_STRANGER, "
                    "permissions: [read]}\n")
    monkeypatch.setenv("TREASURY_SECRET_STRANGER", "whatever")
    result = run("keys", "check", "--json")
    assert result.exit_code == 1
    report = {r["profile"]: r for r in json.loads(result.output)}
    assert report["ops-read"]["ok"] is True
    assert "AuthenticationFailed" in report["trading"]["error"] and "code=0002" in report["trading"]["error"]
    assert "TREASURY_SECRET_UNSET is not set" in report["unset"]["error"]
    assert "code=0102" in report["stranger"]["error"]
    text = run("keys", "check")
    assert text.exit_code == 1 and "FAILED" in text.output and "ok" in text.output


@QUICK
def test_keys_check_warns_about_a_sub_key_that_claims_the_fund_statement(
    env: dict[str, str], served: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TREASURY_RATE_LIMITS__QUERY", "50")
    key = served.sim.keys["demo-transfer"]
    served.sim.keys["demo-transfer"] = key.model_copy(update={"master": False})  # a sub-account's key
    result = run("keys", "check", "--json")
    assert result.exit_code == 0, result.output  # a warning, not a failure
    report = {r["profile"]: r for r in json.loads(result.output)}
    assert report["transfers"]["account_type"] == "sub"
    assert "set fund_statement: false" in report["transfers"]["warning"]
    assert all(r["warning"] is None for name, r in report.items() if name != "transfers")


@QUICK
def test_keys_check_warns_when_a_profile_claims_a_permission_the_exchange_key_lacks(
    env: dict[str, str], served: Counting, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TREASURY_RATE_LIMITS__QUERY", "50")
    key = served.sim.keys["demo-whitelist"]
    served.sim.keys["demo-whitelist"] = key.model_copy(update={"permissions": ["read"]})  # whitelist revoked
    result = run("keys", "check", "--json")
    assert result.exit_code == 0, result.output  # a warning: the profile's steps would be refused, nothing else
    report = {r["profile"]: r for r in json.loads(result.output)}
    warning = report["whitelisting"]["warning"]
    assert "claims 'whitelist'" in warning and "the exchange refused" in warning
    assert report["whitelisting"]["permissions_checked"] == {"read": "granted", "whitelist": "refused"}
    # what the exchange gives no side-effect-free way to find out is said, not guessed
    assert report["withdrawals"]["permissions_checked"] == {"read": "granted", "withdraw": "not checkable"}
    assert all(r["warning"] is None for name, r in report.items() if name != "whitelisting")
    text = run("keys", "check")
    assert "claims 'whitelist'" in text.output


# ------------------------------------------------------------------ resume-exchange


def test_resume_exchange_lifts_the_recorded_ban_and_audits(env: dict[str, str], tmp_path: Path) -> None:
    engine = AppContext(settings=Settings()).engine()  # creates the schema
    guard = HaltGuard(LocalRateLimiter(RateLimits(), SystemClock()), engine, SystemClock())
    guard.ban("HTTP 418 on balances")
    blocked = run("query", "balances", "--key", "ops-read")
    assert blocked.exit_code == 1 and "banned" in blocked.output and "resume-exchange" in blocked.output

    result = run("resume-exchange", "--as", "alice", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["lifted"] == 1 and out["resumed_by"] == "alice" and "HTTP 418" in out["bans"][0]
    with engine.connect() as conn:
        assert active_halts(conn, SystemClock().now()) == []
    from treasury.audit import query_events, verify_chain

    events = list(query_events(engine, type="exchange.resumed"))
    assert [e.actor for e in events] == ["alice"]
    assert verify_chain(engine).ok
    assert run("query", "balances", "--key", "ops-read").exit_code == 0
    assert run("resume-exchange", "--as", "  ").exit_code == 2


def test_resume_exchange_clears_the_redis_ban(env: dict[str, str], redis_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREASURY_BROKER_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    RedisRateLimiter(client, RateLimits(), SystemClock()).ban("HTTP 418 seen by a worker")
    result = run("query", "balances", "--key", "ops-read")
    assert result.exit_code == 1 and "HTTP 418 seen by a worker" in result.output
    result = run("resume-exchange", "--as", "bob", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["redis"] is True
    assert client.get("treasury:banned") is None
    assert run("query", "balances", "--key", "ops-read").exit_code == 0
    client.close()
