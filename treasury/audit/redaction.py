"""Keep secrets and signatures out of audit rows.

Two layers, because payloads come from many places:

- a key whose name looks secret (``secret``, ``signature``, ``api_key``, ``X-HK-APIKEY``,
  ``X-TWO-FA-TOKEN``, ``password``, ``token``, ``totp`` …) has its value replaced by
  ``"[redacted]"``, at any depth;
- inside strings, ``name=value`` and ``name: value`` pairs with such a name (a signed query
  string, a header dump in an error message) have the value replaced.

An API key id is redacted too: with a leaked secret it is half a credential, and auditors
identify keys by profile name, which is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from treasury.audit.canonical import REDACTED

_SECRET_NAME = (
    r"secret|signature|api[-_]?key|apikey|password|passphrase|token|totp|"
    r"x-hk-apikey|x-two-fa-token|authorization|private[-_]?key|cookie"
)
# ``sign`` alone (ccxt's ``broker_sign`` header) without matching ``design`` or ``assign``.
_KEY_RE = re.compile(rf"(?:{_SECRET_NAME})|(?:^|[-_])sign$", re.IGNORECASE)
_HINT_RE = re.compile(rf"{_SECRET_NAME}|sign", re.IGNORECASE)
# name=value in query strings; "name": "value" / name: value in dumped headers and messages.
# Possessive quantifiers and a word-start lookbehind keep this linear on long strings.
_PAIR_RE = re.compile(r"""(?<![\w-])(?P<name>[\w-]++)(?P<sep>['"]?\s*+[:=]\s*+['"]?)(?P<value>[^\s&'",;}\]]++)""")


def is_secret_key(name: object) -> bool:
    """True when a payload key's name says its value is a secret or a signature."""
    return bool(_KEY_RE.search(str(name)))


def scrub_text(text: str) -> str:
    """Mask the values of ``name=value`` / ``name: value`` pairs whose name looks secret."""
    if not _HINT_RE.search(text):
        return text

    def mask(m: re.Match[str]) -> str:
        return f"{m['name']}{m['sep']}{REDACTED}" if is_secret_key(m["name"]) else m[0]

    return _PAIR_RE.sub(mask, text)


def redact(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``payload`` with secret-looking keys masked as ``"[redacted]"``, recursively.

    Lists and nested mappings are walked; strings are scrubbed of inline ``name=value``
    secrets. Other values are returned unchanged (conversion to JSON happens later).
    """
    if payload is None:
        return {}
    return _redact_mapping(payload)


def _redact_mapping(value: Mapping[Any, Any]) -> dict[Any, Any]:
    return {k: (REDACTED if is_secret_key(k) else _redact_value(v)) for k, v in value.items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return _redact_mapping(value)
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    if isinstance(value, set | frozenset):
        return {_redact_value(v) for v in value}
    return value
