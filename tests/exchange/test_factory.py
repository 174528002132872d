"""Building the client, limiter and profiles from Settings; the `treasury simulator` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from tests.exchange.conftest import CONFIG_DIR
from treasury.clock import ManualClock
from treasury.errors import ConfigError
from treasury.exchange import HaltGuard, HostRateLimiter, LocalRateLimiter, RedisRateLimiter
from treasury.runtime.exchange import SIMULATOR_BASE_URL, build_client, build_limiter, load_profile
from treasury.settings import Settings


def settings(**values: object) -> Settings:
    return Settings(config_dir=CONFIG_DIR, **values)  # type: ignore[arg-type]


def test_no_url_means_the_in_process_simulator() -> None:
    client = build_client(settings(), clock=ManualClock())
    assert client.base_url == SIMULATOR_BASE_URL
    assert isinstance(client.limiter, LocalRateLimiter)
    with client:
        data = client.call("balances", load_profile(settings(), "ops-read")).data
    assert {b["asset"]: b["total"] for b in data["balances"]}["USDT"] == "250000"


def test_url_means_a_real_http_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    s = settings(base_url="http://127.0.0.1:9/", http_timeout_seconds=2.5, recv_window_ms=3000)
    client = build_client(s, clock=ManualClock())
    assert client.base_url == "http://127.0.0.1:9" and client.recv_window_ms == 3000
    assert isinstance(client.http, httpx.Client) and client.http.timeout.read == 2.5
    assert isinstance(client.limiter, HostRateLimiter) and client.limiter.path.parent == tmp_path
    client.close()
    assert build_client(settings(env="production"), clock=ManualClock()).base_url == "https://api-pro.hashkey.com"


def test_limiter_choice(sqlite_engine: object, redis_url: str) -> None:
    clock = ManualClock()
    redis_settings = settings(base_url="http://x", broker_url=SecretStr(redis_url))
    assert isinstance(build_limiter(redis_settings, clock), RedisRateLimiter)
    guarded = build_limiter(settings(), clock, engine=sqlite_engine)  # type: ignore[arg-type]
    assert isinstance(guarded, HaltGuard) and isinstance(guarded.limiter, LocalRateLimiter)


def test_in_process_simulator_with_a_broker_is_refused(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="TREASURY_BROKER_URL"):
        build_client(settings(broker_url=SecretStr(redis_url)), clock=ManualClock())


def test_load_profile_errors_name_the_problem(tmp_path: Path) -> None:
    profile = load_profile(settings(), "withdrawals")
    assert profile.api_key == "demo-withdraw" and profile.secret.get_secret_value() == "demo-withdraw-secret"
    with pytest.raises(ConfigError, match="unknown key profile 'nope'; known profiles: fiat, ops-read"):
        load_profile(settings(), "nope")
    with pytest.raises(ConfigError, match=r"keys\.yaml: file not found"):
        load_profile(Settings(config_dir=tmp_path), "ops-read")
    (tmp_path / "keys.yaml").write_text(
        "profiles:\n  x: {api_key: k, secret_file: missing.secret, permissions: [read]}\n"
    )
    with pytest.raises(ConfigError, match=r"missing\.secret cannot be read"):
        load_profile(Settings(config_dir=tmp_path), "x")


def test_keys_yaml_holds_no_secret_values() -> None:
    text = (CONFIG_DIR / "keys.yaml").read_text()
    for secret_file in (CONFIG_DIR / "secrets").glob("*.secret"):
        assert secret_file.read_text().strip() not in text
    profiles = yaml.safe_load(text)["profiles"]
    assert all("secret" not in spec and ("secret_file" in spec) != ("secret_env" in spec) for spec in profiles.values())


def _ctrl_c_as_in_a_terminal() -> None:
    # A suite started in the background (`cmd &` without job control) inherits SIGINT ignored,
    # and a process that starts with it ignored rightly keeps ignoring it; a terminal's does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _served(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON object `treasury simulator --json` prints once it listens."""
    assert proc.stdout is not None
    lines: list[str] = []
    while not "".join(lines).rstrip().endswith("}"):
        line = proc.stdout.readline()
        assert line, "the simulator printed no address"
        lines.append(line)
    result: dict[str, Any] = json.loads("".join(lines))
    return result


def test_simulator_command_serves_until_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "TREASURY_CONFIG_DIR": str(CONFIG_DIR)}
    with subprocess.Popen(
        [sys.executable, "-m", "treasury.cli.main", "simulator", "--port", "0", "--json", "--seed", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_ctrl_c_as_in_a_terminal,
    ) as proc:
        try:
            url = _served(proc)["url"]
            assert httpx.get(f"{url}/api/v1/time", timeout=5).json()["serverTime"] > 0
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_simulator_command_serves_a_given_state_with_its_fault_rules(tmp_path: Path) -> None:
    state = tmp_path / "state.yaml"
    default = (CONFIG_DIR / "simulator.yaml").read_text()
    assert 'quote: USDT, price: "60000"' in default
    state.write_text(default.replace('quote: USDT, price: "60000"', 'quote: USDT, price: "12345"'))
    faults = tmp_path / "faults.yaml"
    faults.write_text('- {method: GET, path: /api/v1/time, mode: error_before, status: 503, count: 1}\n')
    with subprocess.Popen(
        [sys.executable, "-m", "treasury.cli.main", "simulator", "--port", "0", "--json",
         "--state", str(state), "--faults", str(faults)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_ctrl_c_as_in_a_terminal,
    ) as proc:
        try:
            shown = _served(proc)
            assert shown["state"] == str(state) and shown["faults"] == 1
            url = shown["url"]
            assert httpx.get(f"{url}/api/v1/time", timeout=5).status_code == 503  # the rule fires once
            assert httpx.get(f"{url}/api/v1/time", timeout=5).status_code == 200
            prices = httpx.get(f"{url}/quote/v1/ticker/price", params={"symbol": "BTCUSDT"}, timeout=5).json()
            assert prices == [{"s": "BTCUSDT", "p": "12345"}]  # the given state, not the default one
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_simulator_command_reports_a_bad_state_file(tmp_path: Path) -> None:
    bad = tmp_path / "state.yaml"
    bad.write_text("accounts: []\n")
    proc = subprocess.run(
        [sys.executable, "-m", "treasury.cli.main", "simulator", "--state", str(bad)],
        capture_output=True, text=True, timeout=30,
    )
    assert proc.returncode == 2 and str(bad) in proc.stderr and "accounts" in proc.stderr


def test_ctrl_c_delivered_to_a_serving_thread_still_stops_the_foreground_wait() -> None:
    """The kernel may hand a process's SIGINT to any thread; the main thread's wait must still
    return to Python often enough to run the handler (an untimed join never did: CI hung)."""
    import threading
    import time

    from treasury.simulator import Simulator, load_state, serve

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    server = serve(Simulator(load_state(CONFIG_DIR / "simulator.yaml")))
    assert server._thread.ident is not None
    fired = threading.Timer(0.3, signal.pthread_kill, args=(server._thread.ident, signal.SIGINT))
    guard = threading.Timer(5.0, server.shutdown)  # so a regression fails instead of hanging
    fired.start()
    guard.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            server.wait()
        assert time.monotonic() - started < 2.0
    finally:
        guard.cancel()
        server.shutdown()
        signal.signal(signal.SIGINT, previous)


def test_the_in_process_simulator_is_refused_with_a_database_other_than_sqlite(pg_url: str) -> None:
    # each command would get an exchange of its own: a withdrawal would report SUCCEEDED and the
    # next command could not find it
    with pytest.raises(ConfigError) as info:
        build_client(settings(database_url=pg_url), clock=ManualClock())
    message = str(info.value)
    assert "TREASURY_DATABASE_URL" in message and "treasury simulator" in message
    assert "TREASURY_BASE_URL" in message and "sqlite" in message.lower()
    assert "postgres@" not in message  # the URL itself (it may carry a password) is not printed
    # SQLite, in a file or in memory, keeps one exchange; a URL is a real (shared) exchange
    build_client(settings(database_url="sqlite://"), clock=ManualClock()).close()
    build_client(settings(database_url=pg_url, base_url="http://127.0.0.1:1"), clock=ManualClock()).close()


def test_a_command_with_postgresql_and_the_in_process_simulator_exits_2(pg_url: str, pg_engine: Any) -> None:
    from click.testing import CliRunner

    from treasury.cli.context import AppContext
    from treasury.cli.main import cli

    wf = Path(__file__).resolve().parents[2] / "workflows" / "treasury-sweep.yaml"
    app = AppContext(settings=settings(database_url=pg_url), _engine=pg_engine)
    res = CliRunner().invoke(cli, ["run", str(wf), "-i", "amount=10", "--as", "erin"], obj=app)
    assert res.exit_code == 2, res.output
    assert "treasury simulator" in res.output and "TREASURY_BASE_URL" in res.output


@pytest.mark.parametrize("url", ["https://api-pro.hashkey.com", "https://API-PRO.HashKey.com:443/",
                                 "https://api-pro.sim.hashkeydev.com"])
def test_the_simulator_environment_never_talks_to_hashkey(url: str) -> None:
    # TREASURY_ENV defaults to simulator, where demo keys sign and `policy: none` is allowed: an
    # operator who sets only TREASURY_BASE_URL to HashKey must not get those with real money
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="TREASURY_ENV"):
        Settings(base_url=url)
    assert Settings(base_url=url, env="sandbox").exchange_url() == url.rstrip("/")
    assert Settings(base_url="http://simulator:8080").exchange_url() == "http://simulator:8080"
