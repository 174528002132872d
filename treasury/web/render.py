"""Page rendering: Jinja2 with autoescape, control characters made visible, times and amounts.

Free text reaches a page through the same ``escape_text`` as the terminal (``treasury.display``):
a bidi override or an escape sequence in a reason is shown as ``\\u202e``, never obeyed.
Times are shown in the desk's zone with UTC on hover; amounts right-aligned with their asset.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from treasury.clock import as_utc
from treasury.display import escape_text, json_safe

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return escape_text(value)
    return value


def when(value: Any, zone: ZoneInfo) -> Markup:
    """``<time>`` in the desk's zone, with the UTC time on hover."""
    if value is None or value == "":
        return Markup("<span class=muted>-</span>")
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return Markup(escape(escape_text(value)))
    utc = as_utc(value)
    local = utc.astimezone(zone)
    return Markup('<time datetime="{}" title="{} UTC">{}</time>').format(
        utc.strftime("%Y-%m-%dT%H:%M:%SZ"), utc.strftime("%Y-%m-%d %H:%M:%S"), local.strftime("%Y-%m-%d %H:%M:%S %Z"))


def amount(value: Any, asset: Any = None) -> Markup:
    """An amount as the exchange receives it (the exact decimal text), right-aligned, with its asset."""
    text = "-" if value is None else (format(value, "f") if isinstance(value, Decimal) else str(value))
    try:
        negative = Decimal(text) < 0
    except (InvalidOperation, ValueError):
        negative = False
    cls = "amount neg" if negative else "amount"
    asset_html = Markup(" <span class=asset>{}</span>").format(escape_text(asset)) if asset else Markup("")
    return Markup('<span class="{}">{}{}</span>').format(cls, escape_text(text), asset_html)


def pretty_json(value: Any) -> str:
    """JSON for reading (sorted, indented), with unsafe characters escaped."""
    return json_safe(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str))


def json_block(text: str) -> Markup:
    """JSON text for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&`` escaped, so
    no value can close the block."""
    return Markup(str(text).replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


def environment(zone: ZoneInfo) -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                      finalize=_finalize, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda v: when(v, zone)
    env.filters["amount"] = amount
    env.filters["pretty"] = pretty_json
    env.filters["json_block"] = json_block
    env.filters["short"] = lambda v, n=19: (str(v)[:n] + "…") if v and len(str(v)) > n else (v or "")
    env.globals["now_utc"] = lambda: datetime.now(UTC)
    return env
