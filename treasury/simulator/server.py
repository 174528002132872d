"""The simulator over real HTTP: a stdlib ``ThreadingHTTPServer`` on loopback in a daemon thread.

Faults behave as on a real network: ``timeout_after`` holds the connection open without an
answer for the rule's ``seconds`` and then closes it; ``reset_after`` closes the socket with
``SO_LINGER 0`` so the client sees a TCP reset; ``latency`` really sleeps.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from treasury.simulator.app import Simulator
from treasury.simulator.protocol import Answer, SimRequest

log = logging.getLogger(__name__)
MAX_BODY = 10 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        # The request line carries the query string (timestamp, signature): log the path only.
        clean = tuple(a.split("?", 1)[0] if isinstance(a, str) and "?" in a else a for a in args)
        log.debug("%s - " + format, self.address_string(), *clean)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            body = None
        if body is None:
            self._send(Answer(400, {"code": "-1004", "msg": "Bad request: unreadable body"}))
            self.close_connection = True
            return
        path, _, query = self.path.partition("?")
        request = SimRequest(
            method=self.command.upper(),
            path=path,
            query=query,
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()},
            source=self.client_address[0],
        )
        answer = self.server.simulator.process(request, sleep=time.sleep)
        if answer.action == "timeout":
            self.close_connection = True
            self.server.stopping.wait(answer.hold_seconds)
            return
        if answer.action == "reset":
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.connection.close()
            return
        self._send(answer)

    def _send(self, answer: Answer) -> None:
        payload = answer.encoded()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout, a reset) is normal here; anything else is a bug.
        exc = sys.exc_info()[1]
        if isinstance(exc, BrokenPipeError | ConnectionResetError | TimeoutError):
            log.debug("client %s went away: %s", client_address, type(exc).__name__)
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.close_request(request)


class SimulatorServer:
    """A running HTTP simulator. ``url`` like ``http://127.0.0.1:54321``; ``shutdown()`` stops it."""

    def __init__(self, simulator: Simulator, host: str, port: int) -> None:
        self.simulator = simulator
        self._server = _Server((host, port), simulator)
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits at most this long
            name=f"hk-sim-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def shutdown(self) -> None:
        """Stop accepting, release held connections and close the listening socket."""
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the server stops (or ``timeout`` seconds pass); for foreground serving.

        Waits in short slices: a Ctrl-C may be delivered to a serving thread rather than the
        main one, and an untimed join would then never return to run Python's handler.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                return
            self._thread.join(left)

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve(simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
    """Serve ``simulator`` over HTTP in a daemon thread; ``port=0`` picks a free port."""
    return SimulatorServer(simulator, host, port)
