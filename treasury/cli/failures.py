"""Infrastructure failures as one line naming the setting to check (never a password).

A database, broker or exchange that cannot be reached is not a bug in treasury: the person
needs to know which setting points at it, not a SQLAlchemy or redis traceback. The CLI's
top level (``treasury.cli.main``) turns such an error into ``error: ...`` and exit 1; the
full traceback is shown with ``treasury --debug``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from treasury.display import escape_text
from treasury.errors import NotSent
from treasury.settings import Settings

_SECRET_WORDS = ("pass", "secret", "token", "key")


def redact_url(url: str) -> str:
    """``url`` with its password (and secret-looking query values) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    out = url
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        out = out.replace(parts.netloc, f"{user.partition(':')[0]}:***@{host}", 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(k, "***" if any(w in k.lower() for w in _SECRET_WORDS) else v) for k, v in pairs],
                          safe="*")
        out = out.replace("?" + parts.query, "?" + query, 1)
    return out


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error
    text = str(orig if orig is not None else exc).strip().splitlines()
    return escape_text(text[0]) if text else type(exc).__name__


def _causes(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(out) < 10:
        seen.add(id(current))
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _is_database(exc: BaseException) -> bool:
    from sqlalchemy.exc import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def _is_broker(exc: BaseException) -> bool:
    names = {f"{t.__module__}.{t.__qualname__}" for t in type(exc).__mro__}
    return bool(names & {"redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError",
                         "kombu.exceptions.OperationalError"})


def _is_exchange(exc: BaseException) -> bool:
    import httpx

    return isinstance(exc, httpx.TransportError | NotSent)


def infrastructure_message(exc: BaseException, settings: Settings | None) -> str | None:
    """One line for a database, broker or exchange that cannot be reached; None for anything else.

    The line names the setting to check and its value with any password replaced by ``***``.
    """
    for cause in _causes(exc):
        if _is_database(cause):
            url = redact_url(settings.database_url.get_secret_value()) if settings else "?"
            return (f"the database cannot be used: {_first_line(cause)} "
                    f"(check TREASURY_DATABASE_URL, now {url})")
        if _is_broker(cause):
            raw = settings.broker_url.get_secret_value() if settings and settings.broker_url else None
            url = redact_url(raw) if raw else "unset"
            return f"the broker cannot be reached: {_first_line(cause)} (check TREASURY_BROKER_URL, now {url})"
        if _is_exchange(cause):
            where = settings.exchange_url() if settings else None
            shown = redact_url(where) if where else "the in-process simulator"
            return (f"the exchange cannot be reached: {_first_line(cause)} "
                    f"(check TREASURY_BASE_URL and TREASURY_ENV, now {shown})")
    return None
