"""The metrics and health HTTP server of worker and beat (and anything else that wants one).

- ``GET /metrics``: Prometheus text format (this process, or the sum over a prefork pool in
  multiprocess mode, plus the database gauges);
- ``GET /healthz``: liveness, 200 while the process serves;
- ``GET /readyz``: readiness, the health checks as JSON; 200 when none failed, else 503.

It runs in a daemon thread, so it stops with its process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from treasury.monitoring.health import HealthReport

StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every 15 s are not news
        pass


class _DefaultRegistry:
    """The process's default registry seen through another registry (single-process mode)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def build_registry(collectors: Iterable[Any] = ()) -> Any:
    """A registry with this process's metrics (or the pool's, in multiprocess mode) and ``collectors``."""
    from prometheus_client import CollectorRegistry

    from treasury.observe import multiproc

    registry = CollectorRegistry(auto_describe=False)
    if multiproc.enabled():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_DefaultRegistry())
    for collector in collectors:
        registry.register(collector)
    return registry


def wsgi_app(registry: Any, readiness: Callable[[], HealthReport]) -> Callable[..., Iterable[bytes]]:
    """The WSGI application serving ``/metrics``, ``/healthz`` and ``/readyz``."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body = generate_latest(registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        if path == "/readyz":
            report = readiness()
            status = "200 OK" if report.healthy else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(report.to_dict(), default=str).encode() + b"\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: try /metrics, /healthz or /readyz\n"]

    return app


class MetricsServer:
    """Serves ``wsgi_app`` on ``host:port`` (``port=0``: a free one) in a daemon thread."""

    def __init__(self, host: str, port: int, registry: Any, readiness: Callable[[], HealthReport]) -> None:
        self._httpd = make_server(host, port, wsgi_app(registry, readiness), server_class=_Server,
                                  handler_class=_QuietHandler)
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="treasury-metrics", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
