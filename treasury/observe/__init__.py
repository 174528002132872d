"""Watching the runner in production: structured logs, health checks, metrics.

- ``context``: the run, step, client id, operation and person of the work in hand (contextvars);
- ``logs``: JSON lines or console text through the standard library's ``logging``;
- ``health``: the checks behind ``treasury health``, ``/healthz`` and ``/readyz``;
- ``metrics``: Prometheus metrics, and the HTTP server that serves them with the health pages.
"""
