"""Tables fit the terminal; nothing is cut off; lists print one item per line."""

from __future__ import annotations

import io
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from tests.runs.conftest import ROOT
from treasury.cli.context import AppContext
from treasury.cli.main import cli
from treasury.cli.tables import print_fitted
from treasury.settings import Settings

# the shape of one withdraw_orders row: 22 fields, ~400 characters as a table
ORDER = {
    "time": "1796410722859", "id": "W1900000000000000007", "clientOrderId": "Trfdjqxfrx5ss9350872d",
    "accountId": "1001", "coin": "USDT", "coinId": "USDT", "coinName": "USDT", "chainType": "ETH",
    "address": "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", "addressExt": "", "quantity": "1200",
    "arriveQuantity": "1200", "status": "successful", "statusCode": 4,
    "txId": "b3c05de495394daab86949380c330475d963aee5d7595ec7f69c781148761334",
    "addressUrl": "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90", "feeCoinId": "USDT", "feeCoinName": "USDT",
    "fee": "1", "remark": "", "platform": "", "updateTime": "1796410732859",
}


def _render(columns: list[str], rows: list[list[object]], width: int) -> str:
    out = io.StringIO()
    print_fitted(Console(file=out, width=1000), columns, rows, title="withdraw_orders", width=width)
    return out.getvalue()


def test_a_wide_exchange_answer_fits_and_keeps_every_value() -> None:
    columns = list(ORDER)
    text = _render(columns, [[ORDER[c] for c in columns]] * 2, 100)
    assert max(len(line) for line in text.splitlines()) <= 100
    for value in ORDER.values():
        assert str(value) in text
    assert text.count("withdraw_orders") == 2  # one block per row


def test_a_table_that_fits_stays_a_table() -> None:
    text = _render(["step", "state"], [["pay", "SUCCEEDED"]], 100)
    assert "┃ step" in text and max(len(line) for line in text.splitlines()) < 30


def test_client_ids_of_batch_legs_print_one_per_line_not_as_a_repr() -> None:
    legs = ["Tr024dlk4kyoqc0f21d45L00", "Tr024dlk4kyoqc0f21d45L01"]
    text = _render(["step", "client id"], [["sell", legs]], 100)
    assert "['" not in text and "Tr024dlk4kyoqc0f21d45L00 │" in text
    lines = [line for line in text.splitlines() if "Tr024" in line]
    assert len(lines) == 2


def test_commands_fit_the_terminal_width(tmp_path: Path) -> None:
    settings = Settings(config_dir=ROOT / "config", database_url=f"sqlite:///{tmp_path / 't.db'}")
    result = CliRunner(env={"COLUMNS": "80"}).invoke(cli, ["ops"], obj=AppContext(settings=settings))
    assert result.exit_code == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "withdraw_orders" in result.stdout and "reconcile_then_escalate" in result.stdout
