"""Structured logs: JSON lines with the bound context, console text unchanged, the CLI switch."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from treasury.observe import context
from treasury.observe.logs import ConsoleFormatter, JsonFormatter, LogFormat, configure
from treasury.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from treasury.cli.main import main; main()"]


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            info = sys.exc_info()
    return logging.LogRecord("treasury.test", logging.INFO, __file__, 1, msg, args, info)


def test_a_json_line_has_the_bound_fields_and_only_those() -> None:
    with context.bound(run_id="R1", step_id="pay", person="erin"):
        line = json.loads(JsonFormatter().format(_record("sent %s", "x")))
    assert line["message"] == "sent x" and line["level"] == "INFO" and line["logger"] == "treasury.test"
    assert (line["run_id"], line["step_id"], line["person"]) == ("R1", "pay", "erin")
    assert "client_order_id" not in line and "operation" not in line
    assert line["ts"].endswith("+00:00")
    outside = json.loads(JsonFormatter().format(_record("later")))
    assert not set(context.FIELDS) & set(outside)  # the block's fields ended with it


def test_tracebacks_and_signatures_in_json_lines() -> None:
    line = json.loads(JsonFormatter().format(_record("GET /api?a=1&signature=abcdef0123", exc=True)))
    assert "abcdef0123" not in line["message"] and "signature=<redacted>" in line["message"]
    assert "RuntimeError: boom" in line["exc"]


def test_context_is_private_to_each_thread() -> None:
    seen: dict[str, dict[str, str]] = {}

    def worker(name: str) -> None:
        with context.bound(run_id=name):
            seen[name] = context.current()

    with context.bound(run_id="main"):
        threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert context.current() == {"run_id": "main"}
    assert seen == {"a": {"run_id": "a"}, "b": {"run_id": "b"}}


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(KeyError), context.bound(amount="1"):
        pass


def test_console_text_appends_the_context() -> None:
    with context.bound(run_id="R1"):
        text = ConsoleFormatter().format(_record("hello"))
    assert text.endswith("treasury.test: hello run_id=R1")


def test_log_format_setting_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().log_format is LogFormat.CONSOLE
    monkeypatch.setenv("TREASURY_LOG_FORMAT", "json")
    assert Settings().log_format is LogFormat.JSON
    monkeypatch.setenv("TREASURY_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()


def test_configure_installs_one_json_handler_and_console_none() -> None:
    root = logging.getLogger()
    try:
        configure("json")
        configure("json")
        ours = [h for h in root.handlers if getattr(h, "_treasury", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        configure("console")
        assert not [h for h in root.handlers if getattr(h, "_treasury", False)]
    finally:
        configure("console")


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_") or k.startswith("TREASURY_TEST")}
    return subprocess.run([*CLI, *args], capture_output=True, text=True,
                          env={**base, "PYTHONPATH": str(REPO), **env}, timeout=60, check=False)


def test_cli_warnings_come_out_as_json_lines_with_the_switch_or_the_variable(tmp_path: Path) -> None:
    # a key profile that cannot be read makes `keys check` log nothing useful; `query` against an
    # exchange that is not there makes the client warn that it could not read the exchange's time
    env = {"TREASURY_BASE_URL": "http://127.0.0.1:9", "TREASURY_CONFIG_DIR": str(REPO / "config"),
           "TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}"}
    for args, extra in ((["--log-format", "json"], {}), ([], {"TREASURY_LOG_FORMAT": "json"})):
        out = _cli([*args, "query", "balances", "--key", "ops-read"], **env, **extra)
        lines = [json.loads(ln) for ln in out.stderr.splitlines() if ln.startswith("{")]
        assert lines, out.stderr
        assert all({"ts", "level", "logger", "message"} <= set(ln) for ln in lines)
    plain = _cli(["query", "balances", "--key", "ops-read"], **env)
    assert not [ln for ln in plain.stderr.splitlines() if ln.startswith("{")]
