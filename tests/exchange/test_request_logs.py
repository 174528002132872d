"""Per-request HTTP log lines are DEBUG: a worker at INFO does not print one line per request."""

from __future__ import annotations

import logging

import httpx
import pytest

import treasury.exchange.client  # noqa: F401  (installs the httpx log filters)


def _one_request() -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})),
                      base_url="http://exchange.local") as http:
        http.get("/api/v1/time", params={"signature": "abc123"})


def test_httpx_request_lines_are_not_shown_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    _one_request()
    assert [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))] == []


def test_httpx_request_lines_are_debug_lines_and_still_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _one_request()
    lines = [r for r in caplog.records if r.name == "httpx" and "HTTP Request" in r.getMessage()]
    assert lines and {r.levelno for r in lines} == {logging.DEBUG}
    assert all("abc123" not in r.getMessage() for r in lines)
