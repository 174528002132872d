"""A real local HTTP receiver for notifications (http.server on 127.0.0.1 in a thread).

It verifies each webhook signature, keeps every request, and deduplicates by event id like a
careful receiver would. ``hang_on`` makes it hold the answer to the n-th request until
released, so a test can kill the sender while that delivery is in flight.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from treasury.notify.channels import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event_id(self) -> str:
        return self.headers[EVENT_ID_HEADER.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    secret: bytes
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give first (then 200)
    hang_on: int | None = None  # 1-based request number to hold
    hanging: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    now: Callable[[], float] = time.time  # the clock the sender signs with
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with receiver.lock:
                    receiver.requests.append(got)
                    n = len(receiver.requests)
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if self.path.startswith("/hook") and not verify_signature(
                        receiver.secret, got.headers.get(TIMESTAMP_HEADER.lower(), ""), body,
                        got.headers.get(SIGNATURE_HEADER.lower(), ""), now=receiver.now()):
                    receiver.bad_signatures += 1
                    status = 401
                if receiver.hang_on == n:
                    receiver.hanging.set()
                    receiver.release.wait(30)  # the sender is killed meanwhile; the answer goes nowhere
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def ids(self, path_prefix: str = "/hook") -> Counter[str]:
        """How many times each event id arrived (before deduplication)."""
        with self.lock:
            return Counter(r.event_id for r in self.requests if r.path.startswith(path_prefix))

    def deduplicated(self, path_prefix: str = "/hook") -> dict[str, Received]:
        """What a receiver that keeps the ids it processed would process: each event once."""
        seen: dict[str, Received] = {}
        with self.lock:
            for r in self.requests:
                if r.path.startswith(path_prefix):
                    seen.setdefault(r.event_id, r)
        return seen
