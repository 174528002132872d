"""Secret canaries: a unique secret (and TOTP secret) must never show up in logs (DEBUG, httpx
and httpcore included), exception text, reprs or CLI output, on success and error paths. The
request signature, replayable inside recvWindow, must stay out of the logs too."""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import string
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import click
import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from tests.exchange.conftest import CONFIG_DIR, profile
from tests.observe.jsonlog import json_log
from treasury.cli import ops
from treasury.cli.context import AppContext
from treasury.clock import SystemClock
from treasury.errors import ExchangeError
from treasury.exchange import HashKeyClient, LocalRateLimiter
from treasury.keys import load_key_specs
from treasury.models import Permission
from treasury.settings import RateLimits, Settings
from treasury.simulator import Simulator, serve
from treasury.simulator.state import KeySpec as SimKey
from treasury.simulator.state import load_state

CANARY = f"CANARY-{uuid.uuid4().hex}"
TOTP_CANARY = "CANARY" + "".join(random.choices(string.ascii_uppercase, k=26))  # valid base32
WHITELISTED = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"
WITHDRAW = {"coin": "USDT", "chainType": "ETH", "address": WHITELISTED, "quantity": "10"}
ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "price": "1000", "quantity": "0.01"}


class Capturing:
    """Keeps every signature the exchange received."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.signatures: list[str] = []
        self._lock = threading.Lock()

    def process(self, req: Any, **kwargs: Any) -> Any:
        raw = req.query + "&" + req.body.decode(errors="replace")
        with self._lock:
            self.signatures.extend(v for k, v in parse_qsl(raw) if k == "signature")
        return self.sim.process(req, **kwargs)


@pytest.fixture
def canary_sim() -> Simulator:
    cfg = load_state(CONFIG_DIR / "simulator.yaml").tuned(rate_limits={"query": 50, "order": 50})
    key = SimKey(api_key="canary-key", secret=CANARY, account="1001", permissions=list(Permission), twofa=True)
    return Simulator(cfg.model_copy(update={"keys": [*cfg.keys, key]}))


@pytest.fixture
def served(canary_sim: Simulator) -> Iterator[tuple[str, Capturing]]:
    capturing = Capturing(canary_sim)
    server = serve(capturing)  # type: ignore[arg-type]
    yield server.url, capturing
    server.shutdown()


def _exercise(client: HashKeyClient, sim: Simulator, texts: list[str]) -> None:
    """Success, business error, 5xx, timeout and wrong-secret paths; keep every error's text."""
    good = profile("canary", "canary-key", *Permission, secret=CANARY, totp_secret=TOTP_CANARY)
    texts += [repr(good), str(good), good.model_dump_json(), repr(good.model_dump())]
    texts.append(repr(client.call("balances", good)))
    texts.append(repr(client.call("withdraw", good, {**WITHDRAW, "clientOrderId": "c1"})))
    # (A second withdrawal would wait for the next 30 s TOTP step: a token is single-use.)
    attempts: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
        ("order", {"orderId": "42"}, []),
        ("spot_order", {**ORDER, "newClientOrderId": "c2"},
         [{"path": "/api/v1.1/spot/order", "mode": "error_after", "status": 500, "count": 1}]),
        ("spot_order", {**ORDER, "newClientOrderId": "c3"},
         [{"path": "/api/v1.1/spot/order", "mode": "timeout_after", "seconds": 0.5, "count": 1}]),
    ]
    for name, params, faults in attempts:
        sim.set_faults(faults)
        with pytest.raises(ExchangeError) as info:
            client.call(name, good, params)
        texts += [str(info.value), repr(info.value), repr(info.value.to_dict())]
    sim.set_faults([])
    wrong = profile("wrong", "canary-key", Permission.READ, secret="not-the-" + CANARY)  # contains the canary
    with pytest.raises(ExchangeError) as info:
        client.call("balances", wrong)
    assert info.value.code == "0002"
    texts += [str(info.value), repr(info.value)]


def test_canary_never_leaks_over_http(served: tuple[str, Capturing], canary_sim: Simulator,
                                     caplog: pytest.LogCaptureFixture) -> None:
    url, capturing = served
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "treasury", "treasury.exchange"):
        caplog.set_level(logging.DEBUG, logger=name)
    clock = SystemClock()
    client = HashKeyClient(url, httpx.Client(timeout=0.3), clock=clock,
                           limiter=LocalRateLimiter(RateLimits(query=50, order=50), clock))
    texts: list[str] = []
    with client, json_log() as as_json:
        _exercise(client, canary_sim, texts)

    logs = caplog.text
    # the same records as JSON lines (TREASURY_LOG_FORMAT=json), with the fields they carry
    assert "HTTP Request" in as_json.text and as_json.lines()
    assert CANARY not in as_json.text and TOTP_CANARY not in as_json.text
    assert [sig for sig in capturing.signatures if sig in as_json.text] == []
    assert "HTTP Request" in logs and "httpcore" in {r.name.split(".")[0] for r in caplog.records}
    everything = "\n".join([logs, *texts])
    assert CANARY not in everything
    assert TOTP_CANARY not in everything
    # Our side's logs (the simulator plays the exchange and logs its own access lines).
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("treasury.simulator"))
    assert capturing.signatures
    leaked = [sig for sig in capturing.signatures if sig in ours]
    assert leaked == [], "a request signature appeared in the client's logs"


def test_canary_never_leaks_in_process(canary_sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    clock = SystemClock()
    http = httpx.Client(transport=httpx.MockTransport(canary_sim.handle))
    client = HashKeyClient("http://sim.local", http, clock=clock,
                           limiter=LocalRateLimiter(RateLimits(query=50, order=50), clock))
    texts: list[str] = []
    _exercise(client, canary_sim, texts)
    assert CANARY not in "\n".join([caplog.text, *texts])


def test_settings_repr_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREASURY_DATABASE_URL", f"postgresql+psycopg://app:{CANARY}@db/treasury")
    monkeypatch.setenv("TREASURY_BROKER_URL", f"redis://:{CANARY}@redis:6379/0")
    settings = Settings()
    assert CANARY not in repr(settings) and CANARY not in str(settings)
    assert CANARY not in settings.model_dump_json()


def test_canary_never_leaks_in_cli_output(served: tuple[str, Capturing], canary_sim: Simulator,
                                          tmp_path: Path, request: pytest.FixtureRequest,
                                          monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    stack = contextlib.ExitStack()
    request.addfinalizer(stack.close)
    url, _ = served
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR / "secrets", config / "secrets")
    (config / "keys.yaml").write_text(
        (CONFIG_DIR / "keys.yaml").read_text()
        + "  canary: {api_key: canary-key, secret_env: TREASURY_SECRET_CANARY, "
          "totp_secret_env: TREASURY_TOTP_CANARY, permissions: [read, withdraw]}\n"
        + "  canary-file: {api_key: canary-key, secret_file: canary.secret, permissions: [read]}\n"
    )
    (config / "canary.secret").write_text(f"wrong-{CANARY}\n")  # a wrong secret: an error path
    assert CANARY not in (config / "keys.yaml").read_text()
    assert all(spec.secret_env or spec.secret_file for spec in load_key_specs(config / "keys.yaml").values())
    for name, value in {
        "TREASURY_BASE_URL": url, "TREASURY_CONFIG_DIR": str(config),
        "TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}", "TREASURY_SECRET_CANARY": CANARY,
        "TREASURY_TOTP_CANARY": TOTP_CANARY, "TREASURY_RATE_LIMITS__QUERY": "50",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    group = click.Group("treasury")
    ops.register(group)
    outputs = []
    as_json = stack.enter_context(json_log())
    for args in (
        ["query", "balances", "--key", "canary", "--json"],
        ["query", "balances", "--key", "canary"],
        ["query", "order", "--key", "canary", "orderId=7"],
        ["query", "order", "--key", "canary", "orderId=7", "--json"],
        ["query", "balances", "--key", "canary-file"],
        ["query", "withdraw", "--key", "canary"],
        ["keys", "check", "--json"],
        ["keys", "check"],
    ):
        result = CliRunner().invoke(group, args, obj=AppContext(settings=Settings()))
        outputs.append(result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "code=0002" in outputs[4]  # the wrong secret did fail
    text = "\n".join([*outputs, caplog.text, as_json.text])
    assert as_json.lines()
    assert CANARY not in text and TOTP_CANARY not in text
    assert SecretStr(CANARY).get_secret_value() == CANARY  # the canary itself is intact
