"""In a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by Selenium,
with its virtual WebAuthn authenticator standing in for each person's passkey.

Two approvers enrol from invitation links; a requester starts a payout from the command line;
both approve in the browser; the withdrawal reaches the simulator once; ``treasury audit
verify`` passes; the requester's browser shows no Approve button, and a forged POST from it
is refused. Screenshots of the inbox and the run's page are saved in the test's folder and
copied to ``/work/screens/`` when that folder exists.

When the browser cannot start, the test skips with the reason (under CI=true it fails).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import _unavailable
from tests.runs.conftest import PAYOUT
from tests.simulators import serve_without_rate_limits
from treasury.audit import append_event
from treasury.people.invites import create_invite

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENS = Path("/work/screens")
WAIT = 20.0

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Browser:
    """One person's Chromium with a virtual passkey authenticator of its own."""

    def __init__(self, profile: Path, origin: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.virtual_authenticator import Protocol, Transport, VirtualAuthenticatorOptions

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1400", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
        self.driver.add_virtual_authenticator(VirtualAuthenticatorOptions(
            protocol=Protocol.CTAP2, transport=Transport.INTERNAL, has_resident_key=True,
            has_user_verification=True, is_user_consenting=True, is_user_verified=True))
        self.origin = origin

    def open(self, path: str) -> None:
        self.driver.get(path if path.startswith("http") else self.origin + path)

    def click(self, css: str) -> None:
        """Click ``css``; found again if the page's live region was replaced in between."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        for _ in range(5):
            try:
                self.driver.find_element(By.CSS_SELECTOR, css).click()
                return
            except StaleElementReferenceException:
                time.sleep(0.2)
        raise AssertionError(f"{css} kept being replaced at {self.driver.current_url}")

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if text in self.driver.page_source:
                return
            time.sleep(0.1)
        raise AssertionError(f"{text!r} did not appear at {self.driver.current_url}:\n{self.driver.page_source[:3000]}")

    def source(self) -> str:
        return str(self.driver.page_source)

    def screenshot(self, path: Path) -> None:
        self.driver.save_screenshot(str(path))

    def quit(self) -> None:
        self.driver.quit()
        self.driver.command_executor.close()  # its keep-alive connection to chromedriver


@pytest.fixture
def browsers(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists() or not DRIVER.exists():
        _unavailable("Chromium (/usr/bin/chromium, /usr/bin/chromedriver)", "not installed")
    made: list[Browser] = []

    def make(origin: str) -> Browser:
        try:
            browser = Browser(tmp_path / f"profile-{len(made)}", origin)
        except Exception as exc:
            _unavailable("headless Chromium", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        made.append(browser)
        return browser

    yield make
    for browser in made:
        browser.quit()


CLI = [sys.executable, "-c", "from treasury.cli.main import main; main()"]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, text=True, capture_output=True, timeout=120)


def test_two_approvers_approve_a_payout_in_the_browser(tmp_path: Path, signed_config: Path, browsers: Any) -> None:
    from treasury.cli.context import AppContext
    from treasury.cli.web import build_console
    from treasury.settings import Settings
    from treasury.web.config import WebSettings

    sim = serve_without_rate_limits(tmp_path)
    port = _free_port()
    origin = f"http://localhost:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    env.update({"TREASURY_CONFIG_DIR": str(signed_config), "TREASURY_WORKFLOWS_DIR": str(ROOT / "workflows"),
                "TREASURY_DATABASE_URL": f"sqlite:///{tmp_path / 'treasury.db'}", "TREASURY_BASE_URL": sim.url,
                "TREASURY_WEB_ORIGIN": origin, "PYTHONPATH": str(ROOT)})
    settings = Settings(config_dir=signed_config, workflows_dir=ROOT / "workflows", base_url=sim.url,
                        database_url=env["TREASURY_DATABASE_URL"], web_origin=origin)
    app = AppContext(settings=settings)
    server = uvicorn.Server(uvicorn.Config(build_console(app, WebSettings()), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        _scenario(tmp_path, env, app, origin, sim.url, browsers)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.runtime().client.close()  # its connections to the simulator
        app.engine().dispose()
        sim.shutdown()


def _enrol(app: Any, browser: Browser, person: str) -> None:
    token = create_invite(app.engine(), person, by="erin", ttl=timedelta(hours=1), now=app.clock.now(),
                          audit=append_event)
    browser.open(f"/enrol/{token}")
    browser.click("#passkey-button")
    browser.wait_for("Passkey enrolled")
    browser.open("/sign-in")
    browser.click("#passkey-button")
    browser.wait_for("Sign out")


def _withdrawals(sim_url: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{sim_url}/_sim/state", timeout=10).json()["withdrawals"])


def _scenario(tmp_path: Path, env: dict[str, str], app: Any, origin: str, sim_url: str, browsers: Any) -> None:
    alice, bob, carol = browsers(origin), browsers(origin), browsers(origin)
    for person, browser in (("alice", alice), ("bob", bob), ("carol", carol)):
        _enrol(app, browser, person)
    started = _cli(env, "run", str(ROOT / "workflows" / "vendor-payout.yaml"), "--as", "carol", "--json",
                   *(f"-i{k}={v}" for k, v in PAYOUT.items()))
    assert started.returncode == 0 and '"AWAITING_APPROVAL"' in started.stdout, started.stderr
    run_id = json.loads(started.stdout)["id"]

    # the requester: no Approve button on her own run, and a forged POST is refused
    carol.open(f"/runs/{run_id}")
    carol.wait_for(run_id)
    assert "four eyes" in carol.source() and "Approve…" not in carol.source()
    forged = carol.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const form = new FormData();"
        "form.append('csrf', document.querySelector('input[name=csrf]').value);"
        "form.append('document', arguments[0]); form.append('seal', 'forged'); form.append('credential', '{}');"
        "fetch('/decisions', {method: 'POST', body: form}).then(r => r.text().then(t => done([r.status, t])));",
        json.dumps({"kind": "approve", "person": "carol", "run": run_id, "nonce": "n", "v": 1}))
    assert forged[0] == 403 and "not issued to your session" in forged[1]

    # alice approves from her inbox
    alice.open("/inbox")
    alice.wait_for(run_id)
    assert "allowlist: Vendor A" in alice.source()
    shot = tmp_path / "inbox.png"
    alice.screenshot(shot)
    alice.click(f'a[href="/runs/{run_id}/approve"]')
    alice.wait_for("Sign this decision")
    alice.click("#passkey-button")
    alice.wait_for("Recorded")
    assert _withdrawals(sim_url) == []

    # bob's approval reaches the quorum: the withdrawal is sent, once
    bob.open(f"/runs/{run_id}")
    bob.wait_for("Approve…")
    bob.click(f'a[href="/runs/{run_id}/approve"]')
    bob.wait_for("Sign this decision")
    bob.click("#passkey-button")
    bob.wait_for("SUCCEEDED")
    sent = _withdrawals(sim_url)
    assert len(sent) == 1, sent
    bob.open(f"/runs/{run_id}")
    bob.wait_for("request.sent")
    run_shot = tmp_path / "run.png"
    bob.screenshot(run_shot)
    # the requester's page, open since before the votes, updates without a reload
    carol.wait_for("SUCCEEDED")
    assert "Approve…" not in carol.source()

    verified = _cli(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "passkey" in verified.stdout or "signatures verify" in verified.stdout
    if SCREENS.is_dir():
        for shot_path in (shot, run_shot):
            shutil.copy(shot_path, SCREENS / shot_path.name)
