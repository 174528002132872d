"""Persistence: the simulated world survives the process and is shared between processes."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.identities import signed_config_copy
from tests.simulator.conftest import HK, STATE_FILE, WHITE_USDT, balance, effects
from treasury.clock import ManualClock
from treasury.errors import ConfigError
from treasury.simulator import Simulator, SimulatorConfig, persist_path_for
from treasury.simulator.funding import wallet_signature

ROOT = Path(__file__).resolve().parents[2]
TRANSFER = "/api/v1/account/assetTransfer"
WITHDRAW = "/api/v1/account/withdraw"
FIAT = "/api/v1/account/fiat/withdraw"
ORDER = "/api/v1/spot/order"
BANK = "HSBC-001-234567-838"
NEW_ADDRESS = "0x1111111111111111111111111111111111111111"
VOLATILE = ("serverTime", "rate_limits", "faults")


def stable(sim: Simulator) -> dict[str, Any]:
    """``sim.state()`` without what is per process or per instant."""
    state = sim.state()
    return {k: v for k, v in state.items() if k not in VOLATILE}


class Session:
    """A simulator with its own client and signers (one per simulated process)."""

    def __init__(self, cfg: SimulatorConfig, clock: ManualClock, path: Path | None) -> None:
        self.sim = Simulator(cfg, clock=clock, seed=1, persist_path=path)
        self.clock = clock
        self.client = httpx.Client(transport=httpx.MockTransport(self.sim.handle), base_url="https://sim.test")

    def key(self, api_key: str) -> HK:
        return HK(self.client, self.clock, api_key)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "t.db.simulator.json"


@pytest.fixture
def opened(cfg: SimulatorConfig, clock: ManualClock) -> Iterator[Any]:
    sessions: list[Session] = []

    def open_session(path: Path | None) -> Session:
        sessions.append(Session(cfg, clock, path))
        return sessions[-1]

    yield open_session
    for s in sessions:
        s.close()


def busy_world(s: Session) -> None:
    """One effect of every kind, including a resting order (locked funds), a cancel and a maker fill."""
    admin = s.key("demo-admin")
    ok = [
        admin.post(TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="12.5",
                   clientOrderId="tr-1", remark="to custody"),
        admin.post(WITHDRAW, coin="USDT", chainType="ETH", address=WHITE_USDT, quantity="100", clientOrderId="wd-1"),
        s.key("demo-fiat").post(FIAT, asset="USD", amount="2500", bankAccount=BANK, clientOrderId="fw-1"),
        admin.post(ORDER, symbol="BTCUSDT", side="BUY", type="LIMIT", price="61000", quantity="0.01",
                   newClientOrderId="taker-1"),
        admin.post(ORDER, symbol="BTCUSDT", side="BUY", type="LIMIT", price="50000", quantity="0.2",
                   newClientOrderId="rest-1"),
        admin.post(ORDER, symbol="ETHUSDT", side="SELL", type="LIMIT", price="3500", quantity="2",
                   newClientOrderId="maker-1"),
        admin.post(ORDER, symbol="ETHUSDT", side="BUY", type="MARKET", quantity="1"),  # generated client id
        admin.post(ORDER, symbol="BTCUSDT", side="BUY", type="LIMIT", price="40000", quantity="0.1",
                   newClientOrderId="cancel-me"),
        admin.post("/api/v1/whitelist/walletSigning", coin="USDT", chainType="ETH", address=NEW_ADDRESS,
                   message="mine", walletSignature=wallet_signature(NEW_ADDRESS, "mine")),
    ]
    assert all(r.status_code == 200 for r in ok), [r.text for r in ok]
    assert admin.delete(ORDER, clientOrderId="cancel-me").json()["status"] == "CANCELED"
    s.sim.deposit("1001", "BTC", "0.5", "Bitcoin")
    assert s.sim.set_price("ETHUSDT", "3600")  # fills maker-1 at its limit


# --------------------------------------------------------------------------- dump and restore


def test_dump_restore_round_trip_preserves_everything(opened: Any, cfg: SimulatorConfig, clock: ManualClock) -> None:
    s = opened(None)
    busy_world(s)
    s.key("demo-read").get("/api/v1/account")  # reads change nothing
    dump = s.sim.dump()
    text = json.dumps(dump)  # plain JSON: no Decimal, no float
    assert "Decimal" not in text and dump["balances"]["1001"]["USDT"]["locked"] == "10000.0"
    assert all(isinstance(v, str) for v in dump["prices"].values())
    assert all(isinstance(o["order_id"], str) and isinstance(o["account_id"], str) for o in dump["orders"])

    other = Simulator(cfg, clock=clock)
    other.restore(json.loads(text))
    assert stable(other) == stable(s.sim)
    assert other.dump() == dump
    state = stable(other)
    assert balance(other, "1001", "USDT", "locked") == "10000"  # rest-1 still holds its funds
    assert {o["clientOrderId"]: o["status"] for o in state["orders"]}.items() >= {
        "taker-1": "FILLED", "rest-1": "NEW", "maker-1": "FILLED", "cancel-me": "CANCELED"}.items()
    assert any(e["address"] == NEW_ADDRESS for e in state["withdraw_whitelist"])
    assert effects(other) == {"orders": 5, "transfers": 1, "withdrawals": 1, "fiat_withdrawals": 1,
                              "wallet_signings": 1, "trades": 3}


def test_restored_resting_order_still_fills_and_cancels(opened: Any, cfg: SimulatorConfig,
                                                        clock: ManualClock) -> None:
    s = opened(None)
    busy_world(s)
    t = opened(None)
    t.sim.restore(s.sim.dump())
    assert t.key("demo-trade").delete(ORDER, clientOrderId="rest-1").json()["status"] == "CANCELED"
    assert balance(t.sim, "1001", "USDT", "locked") == "0"
    assert t.key("demo-trade").delete(ORDER, clientOrderId="taker-1").json()["code"] == "-1139"


def test_duplicate_client_ids_are_still_refused_after_restore(opened: Any, path: Path) -> None:
    busy_world(opened(path))
    s = opened(path)  # a later process
    before = effects(s.sim)
    admin = s.key("demo-admin")
    refused = {
        "transfer": admin.post(TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="1",
                               clientOrderId="tr-1"),
        "withdraw": admin.post(WITHDRAW, coin="USDT", chainType="ETH", address=WHITE_USDT, quantity="5",
                               clientOrderId="wd-1"),
        "fiat": s.key("demo-fiat").post(FIAT, asset="USD", amount="20", bankAccount=BANK, clientOrderId="fw-1"),
        "order": admin.post(ORDER, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001",
                            newClientOrderId="rest-1"),
    }
    assert {k: r.json()["code"] for k, r in refused.items()} == {
        "transfer": "-1024", "withdraw": "-1024", "fiat": "-1024", "order": "-1141"}
    assert effects(s.sim) == before
    # the original records are still found by client id
    assert s.key("demo-read").get(ORDER, origClientOrderId="rest-1").json()["status"] == "NEW"
    [item] = s.key("demo-read").get("/api/v1/account/withdrawOrders", clientOrderId="wd-1").json()
    assert item["quantity"] == "100"


def test_ids_after_restore_never_collide(opened: Any, path: Path) -> None:
    first = opened(path)
    busy_world(first)
    old = first.sim.dump()
    old_ids = {r["order_id"] for k in ("orders", "transfers", "withdrawals", "fiat_withdrawals", "deposits")
               for r in old[k]} | {r["id"] for r in old["wallet_signings"]}
    old_seqs = {t["trade_id"] for t in old["trades"]} | {r["flow_id"] for r in old["transfers"]}
    second = opened(path)
    admin = second.key("demo-admin")
    new = [
        admin.post(TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT", quantity="1").json()["orderId"],
        admin.post(ORDER, symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001").json()["orderId"],
        admin.post(WITHDRAW, coin="USDT", chainType="ETH", address=WHITE_USDT, quantity="5").json()["orderId"],
    ]
    assert not set(new) & old_ids and len(set(new)) == 3
    dump = second.sim.dump()
    assert not {t["trade_id"] for t in dump["trades"][len(old["trades"]):]} & old_seqs
    assert dump["last_id"] > old["last_id"]


def test_counters_below_the_records_are_raised(cfg: SimulatorConfig, clock: ManualClock, opened: Any) -> None:
    s = opened(None)
    busy_world(s)
    dump = s.sim.dump()
    biggest = max(int(o["order_id"]) for o in dump["orders"])
    dump["last_id"], dump["last_seq"] = 0, 0  # edited by hand
    other = Simulator(cfg, clock=clock)
    other.restore(dump)
    assert other.dump()["last_id"] >= biggest and other.dump()["last_seq"] >= max(
        t["trade_id"] for t in dump["trades"])


def test_fault_rules_and_rate_limit_windows_are_not_saved(opened: Any, path: Path) -> None:
    s = opened(path)
    s.sim.set_faults([{"path": TRANSFER, "mode": "error_before"}])
    s.sim.deposit("1001", "USDT", "1", "ETH")
    saved = json.loads(path.read_text())
    assert "faults" not in saved and "rate_limits" not in saved
    assert opened(path).sim.state()["faults"] == []


# --------------------------------------------------------------------------- sharing a file


def test_two_simulators_on_one_file_see_each_other(opened: Any, path: Path) -> None:
    a = opened(path)
    b = opened(path)
    r = a.key("demo-transfer").post(TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT",
                                    quantity="1000", clientOrderId="a-1")
    assert r.status_code == 200, r.text
    assert balance(b.sim, "1002", "USDT") == "1000"  # b reloads before reading
    r = b.key("demo-withdraw").post(WITHDRAW, coin="USDT", chainType="ETH", address=WHITE_USDT, quantity="10",
                                    clientOrderId="b-1")
    assert r.status_code == 200, r.text
    [item] = a.key("demo-read").get("/api/v1/account/withdrawOrders").json()
    assert item["clientOrderId"] == "b-1"
    # a client id used by one process is a duplicate for the other
    r = b.key("demo-transfer").post(TRANSFER, fromAccountId="1001", toAccountId="1002", coin="USDT",
                                    quantity="1000", clientOrderId="a-1")
    assert r.json()["code"] == "-1024"
    assert stable(a.sim) == stable(b.sim)
    assert balance(a.sim, "1001", "USDT") == str(250000 - 1000 - 10 - 1)


def test_only_changes_are_saved(opened: Any, path: Path) -> None:
    s = opened(path)
    assert not path.exists()
    reader = s.key("demo-read")
    reader.get("/api/v1/account")
    s.sim.state()
    refused = s.key("demo-transfer").post(TRANSFER, fromAccountId="1001", toAccountId="1001", coin="USDT",
                                          quantity="1")
    assert refused.json()["code"] == "-1174" and not path.exists()
    s.sim.deposit("1001", "USDT", "1", "ETH")
    assert s.sim.store is not None and s.sim.store.generation == 1
    reader.get("/api/v1/account")
    reader.get("/api/v1/account/withdrawOrders")
    assert s.sim.store.generation == 1 and json.loads(path.read_text())["generation"] == 1


@pytest.mark.parametrize("mode", ["error_after", "timeout_after", "reset_after"])
def test_an_effect_behind_a_failed_answer_survives_the_process(opened: Any, path: Path, mode: str) -> None:
    s = opened(path)
    s.sim.set_faults([{"method": "POST", "path": WITHDRAW, "mode": mode, "count": 1}])
    try:
        r = s.key("demo-withdraw").post(WITHDRAW, coin="USDT", chainType="ETH", address=WHITE_USDT,
                                        quantity="50", clientOrderId="lost-1")
        assert r.status_code == 500
    except (httpx.ReadTimeout, httpx.ReadError):
        assert mode != "error_after"
    later = opened(path)  # a later process reconciles
    [item] = later.key("demo-read").get("/api/v1/account/withdrawOrders", clientOrderId="lost-1").json()
    assert item["quantity"] == "50" and balance(later.sim, "1001", "USDT") == "249949"


def test_reset_and_deleting_the_file_start_over(opened: Any, path: Path) -> None:
    a = opened(path)
    a.sim.deposit("1001", "USDT", "5", "ETH")
    b = opened(path)
    assert balance(b.sim, "1001", "USDT") == "250005"
    b.sim.reset()
    assert balance(a.sim, "1001", "USDT") == "250000" and json.loads(path.read_text())["generation"] == 2
    a.sim.deposit("1001", "USDT", "7", "ETH")
    path.unlink()
    assert balance(b.sim, "1001", "USDT") == "250000"
    assert effects(b.sim)["orders"] == 0 and b.sim.state()["deposits"] == []


# --------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"format": "something-else"}', "format"),
        ("FLOAT", "must be a decimal string"),
        ("UNKNOWN_ACCOUNT", "account '9999'"),
        ("ORPHAN_TRADE", "unknown order"),
    ],
)
def test_a_damaged_file_is_a_config_error_naming_it(
    opened: Any, cfg: SimulatorConfig, clock: ManualClock, path: Path, content: str, words: str
) -> None:
    s = opened(None)
    busy_world(s)
    good = s.sim.dump()
    if content == "FLOAT":
        good["balances"]["1001"]["USDT"]["free"] = 249000.5
        content = json.dumps(good)
    elif content == "UNKNOWN_ACCOUNT":
        good["balances"]["9999"] = {}
        content = json.dumps(good)
    elif content == "ORPHAN_TRADE":
        good["trades"][0]["order_id"] = "42"
        content = json.dumps(good)
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        Simulator(cfg, clock=clock, persist_path=path)
    assert str(path) in str(info.value) and words in str(info.value)
    assert info.value.source == str(path)


def test_a_refused_restore_changes_nothing(opened: Any) -> None:
    s = opened(None)
    busy_world(s)
    before = stable(s.sim)
    broken = s.sim.dump()
    broken["orders"][0]["price"] = 1.5
    with pytest.raises(ConfigError, match=r"orders\[0\]\.price"):
        s.sim.restore(broken)
    assert stable(s.sim) == before


def test_a_file_damaged_by_another_process_answers_500_not_a_traceback(opened: Any, path: Path) -> None:
    s = opened(path)
    s.sim.deposit("1001", "USDT", "1", "ETH")
    path.write_text("{broken")
    r = s.key("demo-read").get("/api/v1/account")
    assert (r.status_code, r.json()["code"]) == (500, "-1000")


def test_persist_path_for_database_urls(tmp_path: Path) -> None:
    assert persist_path_for(f"sqlite:///{tmp_path}/t.db") == tmp_path / "t.db.simulator.json"
    assert persist_path_for("sqlite:///treasury.db") == Path("treasury.db.simulator.json")
    assert persist_path_for("sqlite+pysqlite:///data/x.db?timeout=5") == Path("data/x.db.simulator.json")
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:mem?mode=memory&uri=true",
                "postgresql://postgres@127.0.0.1/test", "not a url"):
        assert persist_path_for(url) is None, url


# --------------------------------------------------------------------------- two processes at once


def transfer_back_and_forth(path: str, tag: str, forward: str, back: str, barrier: Any) -> None:
    """Child process: 20 transfers between 1001 and 1002 through signed requests."""
    from treasury.simulator import load_state

    clock = ManualClock()
    cfg = load_state(STATE_FILE).tuned(rate_limits={"enabled": False})
    s = Session(cfg, clock, Path(path))
    signer = s.key("demo-transfer")
    barrier.wait(timeout=30)
    for i in range(20):
        src, dst, qty = ("1001", "1002", forward) if i % 2 == 0 else ("1002", "1001", back)
        r = signer.post(TRANSFER, fromAccountId=src, toAccountId=dst, coin="USDT", quantity=qty,
                        clientOrderId=f"{tag}-{i}")
        if r.status_code != 200:
            raise SystemExit(f"{tag}-{i}: {r.text}")
    s.close()


def test_concurrent_processes_lose_no_effect(opened: Any, path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=transfer_back_and_forth, args=(str(path), "p", "2", "1", barrier)),
        ctx.Process(target=transfer_back_and_forth, args=(str(path), "q", "5", "2", barrier)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0]
    s = opened(path)
    transfers = s.sim.state()["transfers"]
    assert sorted(t["clientOrderId"] for t in transfers) == sorted(
        [f"p-{i}" for i in range(20)] + [f"q-{i}" for i in range(20)])
    assert len({t["orderId"] for t in transfers}) == 40
    # p moved 10 x (2 - 1) = 10 to custody, q 10 x (5 - 2) = 30; nothing created or lost
    assert (balance(s.sim, "1001", "USDT"), balance(s.sim, "1002", "USDT")) == ("249960", "40")


# --------------------------------------------------------------------------- the CLI, one process per command


def test_cli_processes_share_one_exchange(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from treasury.cli.main import cli

    signed_config_copy(tmp_path / "config")
    db = tmp_path / "t.db"
    env = {"TREASURY_CONFIG_DIR": str(tmp_path / "config"), "TREASURY_DATABASE_URL": f"sqlite:///{db}"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TREASURY_BASE_URL", raising=False)

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    workflow = str(ROOT / "workflows" / "vendor-payout.yaml")
    run = json.loads(invoke("run", workflow, "-i", f"address={WHITE_USDT}", "-i", "amount=1200",
                            "--as", "erin", "--json"))
    assert run["state"] == "AWAITING_APPROVAL"
    invoke("approve", run["id"], "--as", "alice")
    invoke("approve", run["id"], "--as", "bob")
    shown = json.loads(invoke("show", run["id"], "--json"))
    assert shown["state"] == "SUCCEEDED"
    client_id = shown["steps"][1]["client_order_id"]
    assert (tmp_path / "t.db.simulator.json").is_file()

    balances = json.loads(invoke("query", "balances", "--key", "ops-read", "--json"))
    usdt = next(b for b in balances["balances"] if b["asset"] == "USDT")
    assert usdt["total"] == "248799"  # 250000 - 1200 - fee 1
    orders = json.loads(invoke("query", "withdraw_orders", "--key", "ops-read", "--json"))
    assert [(o["clientOrderId"], o["quantity"], o["address"]) for o in orders] == [(client_id, "1200", WHITE_USDT)]
