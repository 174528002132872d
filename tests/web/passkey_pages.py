"""Driving the console's passkey pages with the software authenticator, as the browser script does."""

from __future__ import annotations

import hashlib
import html
import json
import re
from datetime import timedelta
from typing import Any

import httpx
from webauthn.helpers import base64url_to_bytes

from tests.web.conftest import Console
from tests.webauthn_soft import SoftAuthenticator
from treasury.audit import append_event
from treasury.people.invites import create_invite


def field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} field in the page"
    return html.unescape(found.group(1))


def options(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" class="webauthn-options">(.*?)</script>', page, re.S)
    assert found is not None, "no WebAuthn options in the page"
    parsed: dict[str, Any] = json.loads(found.group(1))
    return parsed


def invite(console: Console, person: str, by: str = "erin") -> str:
    return create_invite(console.runtime.engine, person, by=by, ttl=timedelta(hours=1), now=console.clock.now(),
                         audit=append_event)


def enrol(console: Console, person: str) -> SoftAuthenticator:
    """Enrol a new software passkey for ``person`` through the invitation page."""
    auth = SoftAuthenticator()
    token = invite(console, person)
    page = console.client.get(f"/enrol/{token}")
    assert page.status_code == 200, page.text
    challenge = base64url_to_bytes(options(page.text)["challenge"])
    done = console.client.post(f"/enrol/{token}", data={"csrf": field(page.text, "csrf"),
                                                        "credential": auth.create(challenge)})
    assert done.status_code == 200 and "Passkey enrolled" in done.text, done.text
    return auth


def sign_in(console: Console, auth: SoftAuthenticator) -> httpx.Response:
    console.client.cookies.clear()
    page = console.client.get("/sign-in")
    challenge = base64url_to_bytes(options(page.text)["challenge"])
    response = console.client.post("/sign-in", data={"csrf": field(page.text, "csrf"), "next": "",
                                                     "credential": auth.get(challenge)})
    return response


def decision_form(console: Console, path: str, auth: SoftAuthenticator) -> dict[str, str]:
    """The form a decision page posts, with the passkey's assertion over the document's SHA-256."""
    page = console.client.get(path)
    assert page.status_code == 200, page.text
    document = field(page.text, "document")
    challenge = hashlib.sha256(document.encode()).digest()
    assert base64url_to_bytes(options(page.text)["challenge"]) == challenge
    return {"csrf": field(page.text, "csrf"), "document": document, "seal": field(page.text, "seal"),
            "credential": auth.get(challenge)}
