"""Every page's role matrix, sign-in redirects, CSRF refusals, security headers, and no secret on any page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web.conftest import SINGLE_ROLE, Console
from treasury.web.roles import PAGES
from treasury.web.security import CSP

# a path for each page of the role matrix (a run's page needs a run: filled in per test)
PATHS = {"inbox": "/inbox", "runs": "/runs", "run": "/runs/{run}", "attention": "/attention",
         "schedules": "/schedules", "audit": "/audit", "exchange": "/exchange"}


def test_the_matrix_names_every_page() -> None:
    assert set(PATHS) == set(PAGES)


@pytest.mark.parametrize("role", sorted(SINGLE_ROLE))
def test_every_page_answers_its_roles_and_refuses_the_others(console: Console, role: str) -> None:
    run_id = console.start_payout()
    console.sign_in(SINGLE_ROLE[role])
    for name, path in PATHS.items():
        response = console.client.get(path.format(run=run_id))
        allowed = role in PAGES[name]
        assert response.status_code == (200 if allowed else 403), (role, name, response.status_code)
        if not allowed:
            assert "may not open" in response.text


def test_an_action_the_role_does_not_allow_is_403(console: Console) -> None:
    run_id = console.start_payout()
    console.sign_in("ivy")  # an auditor reads everything and changes nothing
    for path in (f"/runs/{run_id}/approve", f"/runs/{run_id}/reject", "/exchange/lift",
                 "/schedules/treasury-sweep/pause"):
        assert console.client.get(path).status_code == 403, path


def test_without_a_session_every_page_goes_to_sign_in(console: Console) -> None:
    for path in ("/inbox", "/runs", "/runs/R1?x=1", "/attention", "/schedules", "/audit", "/exchange",
                 "/audit/export.csv", "/runs/R1/approve"):
        response = console.client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/sign-in?next=%2F"), path


def test_a_made_up_session_cookie_is_no_session(console: Console) -> None:
    console.client.cookies.set("treasury_session", "forged")
    assert console.client.get("/inbox").status_code == 303


@pytest.mark.parametrize("path", ["/sign-in", "/inbox", "/runs", "/static/console.js", "/nowhere", "/healthz"])
def test_security_headers_on_every_answer(console: Console, path: str) -> None:
    console.sign_in("alice")
    response = console.client.get(path)
    assert response.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_no_page_has_an_inline_script(console: Console) -> None:
    console.start_payout()
    console.sign_in("alice")
    for path in ("/inbox", "/runs", "/sign-in", "/audit", "/exchange"):
        html = console.client.get(path).text
        for chunk in html.split("<script")[1:]:
            head = chunk.split(">", 1)[0]
            assert 'src="/static/' in head or 'type="application/json"' in head, (path, head)


def test_a_post_without_the_csrf_token_is_refused(console: Console) -> None:
    token = console.sign_in("alice")
    response = console.client.post("/sign-out", data={"csrf": "wrong"})
    assert response.status_code == 403 and "CSRF" in response.text
    assert console.client.get("/inbox").status_code == 200  # still signed in
    console.client.cookies.set("treasury_session", token)
    response = console.client.post("/decisions", data={"document": '{"kind":"approve"}', "csrf": ""})
    assert response.status_code == 403 and "CSRF" in response.text


def test_sign_out_needs_the_token_and_ends_the_session_for_good(console: Console) -> None:
    token = console.sign_in("alice")
    response = console.client.post("/sign-out", data={"csrf": console.csrf})
    assert response.status_code == 303 and response.headers["location"] == "/sign-in"
    console.client.cookies.set("treasury_session", token)  # the old cookie, replayed
    assert console.client.get("/inbox").status_code == 303


def test_session_cookie_flags(console: Console) -> None:
    from treasury.web.signin import CEREMONY_COOKIE

    response = console.client.get("/sign-in")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{CEREMONY_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie  # http://localhost


def test_no_secret_from_keys_yaml_is_in_any_page(console: Console, web_config: Path) -> None:
    secrets = [p.read_text().strip() for p in (web_config / "secrets").glob("*.secret")]
    assert secrets and all(len(s) >= 8 for s in secrets)
    run_id = console.start_payout()
    console.sign_in("dave")  # requester, approver and operator: sees every page but the auditor's
    pages = ["/inbox", "/runs", f"/runs/{run_id}", f"/runs/{run_id}/approve", "/attention", "/schedules",
             "/audit?verify=1", "/audit/export.csv", "/audit/export.json", "/exchange", "/exchange?check=1"]
    for path in pages:
        response = console.client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        for secret in secrets:
            assert secret not in response.text, path
