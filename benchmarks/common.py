"""Shared helpers for the benchmark scripts: results, tables, services, workers, memory.

Every benchmark is a script (``python benchmarks/<name>.py``) that prints a small table and
writes ``benchmarks/results/<name>.json`` with the figures, the arguments and the machine.
The scripts use the real services on loopback: PostgreSQL (a schema of their own, dropped at
the end), Redis (a database number of their own, their keys deleted at the end) and the
simulator over HTTP. Nothing here is imported by the treasury package or its tests.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
PYTHON = sys.executable
PG_BASE = os.environ.get("TREASURY_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_HOST = os.environ.get("TREASURY_BENCH_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TREASURY_BENCH_REDIS_PORT", "6379"))

# Each benchmark talks to its own Redis database on the shared server, so two benchmarks (or a
# benchmark and the test suite, which uses 9 to 15 and flushes its workers' databases before
# each test: see tests/conftest.py) never see each other's queues or limiter keys.
REDIS_DB = {"ratelimit": 4, "engine": 5, "approval": 6, "batch": 7}


# --------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summary(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> dict[str, Any]:
    """count, median, p95, p99 and max of ``values`` multiplied by ``scale`` (1000: s -> ms)."""

    def r(v: float | None) -> float | None:
        return None if v is None else round(v * scale, digits)

    return {
        "count": len(values),
        "median": r(statistics.median(values)) if values else None,
        "p95": r(percentile(values, 95)),
        "p99": r(percentile(values, 99)),
        "max": r(max(values)) if values else None,
    }


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a plain aligned table (the figures README.md records)."""
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))))
    sys.stdout.flush()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """The machine and software the figures came from."""
    from importlib.metadata import version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except Exception:
            return None

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _mem_total_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": {n: ver(n) for n in ("celery", "kombu", "redis", "SQLAlchemy", "psycopg", "httpx")},
    }


def write_result(name: str, figures: dict[str, Any], args: Any = None, out: Path | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` (or ``out``) with the figures, args and machine."""
    path = out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": vars(args) if args is not None and hasattr(args, "__dict__") else args,
        "machine": machine(),
        **figures,
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def profile_summary(fn: Callable[[], Any], top: int = 15) -> tuple[Any, str]:
    """Run ``fn`` under cProfile; returns its result and the top functions by cumulative time
    and by own time (the text README.md quotes when a target is missed)."""
    prof = cProfile.Profile()
    result = prof.runcall(fn)
    parts = []
    for order in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(order).print_stats(top)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        parts.append(f"-- by {order} --\n" + "\n".join(lines[:top + 8]))
    return result, "\n".join(parts)


# --------------------------------------------------------------------------- services


def redis_url(db: int, host: str = REDIS_HOST, port: int = REDIS_PORT) -> str:
    return f"redis://{host}:{port}/{db}"


def require_redis(url: str) -> None:
    """Exit with a clear message when Redis at ``url`` does not answer."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        raise SystemExit(f"Redis at {url} is not reachable ({exc}); start redis-server on loopback") from None


def delete_redis_keys(url: str, *patterns: str) -> int:
    """Delete the keys matching ``patterns`` (never FLUSHDB: the server is shared)."""
    import redis

    client = redis.Redis.from_url(url)
    n = 0
    try:
        for pattern in patterns:
            batch = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(batch), 500):
                n += int(client.delete(*batch[i:i + 500]))
    finally:
        client.close()
    return n


@contextlib.contextmanager
def pg_schema(prefix: str = "bench") -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema; the schema is dropped afterwards."""
    from sqlalchemy import text

    from treasury.store.db import make_engine

    admin = make_engine(PG_BASE)
    try:
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:
        raise SystemExit(f"PostgreSQL at {PG_BASE} is not reachable ({exc})") from None
    schema = f"{prefix}_{secrets.token_hex(4)}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_BASE else "?"
    try:
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def sim_config(**settings: Any) -> Any:
    """The shipped simulator world (config/simulator.yaml) with ``settings`` merged in."""
    from treasury.simulator import load_state

    cfg = load_state(ROOT / "config" / "simulator.yaml")
    return cfg.tuned(**settings) if settings else cfg


def copy_config(target: Path, *, policy: bool = False) -> Path:
    """A copy of the shipped config folder (keys, people with demo keys, simulator state, secrets)."""
    from treasury.people.keyring import make_demo_identities

    target.mkdir(parents=True, exist_ok=True)
    names = ["keys.yaml", "people.yaml", "simulator.yaml"] + (["policy.yaml"] if policy else [])
    for name in names:
        shutil.copy(ROOT / "config" / name, target / name)
    shutil.copytree(ROOT / "config" / "secrets", target / "secrets", dirs_exist_ok=True)
    make_demo_identities(target)  # every decision is signed; demo keys sign for the bench people
    return target


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any TREASURY_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TREASURY_")}
    env.update(values)
    env.setdefault("PYTHONPATH", str(ROOT))
    return env


# --------------------------------------------------------------------------- processes


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (a prefork pool's children)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields follow the last ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def rss_mb(pid: int) -> tuple[float, float] | None:
    """(current RSS, peak RSS) of ``pid`` in MiB from /proc (VmRSS, VmHWM); None if gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, kb = line.split()[:2]
            values[name.rstrip(":")] = int(kb) / 1024
    if "VmRSS" not in values:
        return None
    return round(values["VmRSS"], 1), round(values.get("VmHWM", values["VmRSS"]), 1)


@dataclass
class Worker:
    """One ``celery worker`` process (its pool children are found through /proc)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    peak_rss_mb: dict[int, float] = field(default_factory=dict)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"worker {self.name} exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
        return " ready." in self.text()

    def pids(self) -> list[int]:
        return [self.proc.pid, *child_pids(self.proc.pid)] if self.alive() else []

    def sample_rss(self) -> None:
        """Remember the peak RSS of the parent and each pool child seen so far."""
        for pid in self.pids():
            got = rss_mb(pid)
            if got is not None:
                self.peak_rss_mb[pid] = max(self.peak_rss_mb.get(pid, 0.0), got[1])

    def kill9(self) -> None:
        """SIGKILL the parent and its pool children at once: nothing gets to clean up."""
        self.sample_rss()
        kids = child_pids(self.proc.pid)
        for pid in [self.proc.pid, *kids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


@dataclass
class Cluster:
    """Celery worker processes sharing one broker, database, simulator and queue."""

    env: dict[str, str]
    tmp: Path
    queue: str
    app: str = "treasury.worker"
    workers: list[Worker] = field(default_factory=list)

    def start(self, name: str, *, concurrency: int = 1, queue: str | None = None, extra: Sequence[str] = (),
              **env: str) -> Worker:
        log = self.tmp / f"{name}.log"
        queue = queue or self.queue
        cmd = [PYTHON, "-m", "celery", "-A", self.app, "worker", "--pool=prefork", "-c", str(concurrency),
               "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", queue,
               "-n", f"{name}-{queue}@%h", "-l", "INFO", *extra]
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, env={**self.env, **env}, cwd=self.tmp, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        worker = Worker(name, proc, log)
        self.workers.append(worker)
        return worker

    def start_ready(self, *names: str, timeout: float = 60, concurrency: int = 1, queue: str | None = None,
                    **env: str) -> list[Worker]:
        started = [self.start(n, concurrency=concurrency, queue=queue, **env) for n in names]
        for w in started:
            wait_for(w.ready, timeout, f"worker {w.name} to be ready")
        return started

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    def sample_rss(self) -> None:
        for w in self.live():
            w.sample_rss()

    def stop_all(self) -> None:
        for w in self.workers:
            if w.alive():
                w.sample_rss()
                os.kill(w.proc.pid, signal.SIGTERM)
        for w in self.workers:
            try:
                w.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for pid in [w.proc.pid, *child_pids(w.proc.pid)]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                w.proc.wait(timeout=10)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def worker_env(*, broker: str, database: str, base_url: str, config_dir: Path, queue: str,
               workflows_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a treasury Celery worker for one benchmark."""
    values = {
        "TREASURY_BROKER_URL": broker,
        "TREASURY_DATABASE_URL": database,
        "TREASURY_BASE_URL": base_url,
        "TREASURY_CONFIG_DIR": str(config_dir),
        "TREASURY_QUEUE": queue,
    }
    if workflows_dir is not None:
        values["TREASURY_WORKFLOWS_DIR"] = str(workflows_dir)
    values.update(extra)
    return clean_env(**values)


# --------------------------------------------------------------------------- the exchange load


def trading_profile() -> Any:
    """The demo trading key (demo-trade) as a resolved key profile."""
    from pydantic import SecretStr

    from treasury.keys import KeyProfile
    from treasury.models import Permission

    return KeyProfile(name="trading", api_key="demo-trade", secret=SecretStr("demo-trade-secret"),
                      permissions=frozenset({Permission.READ, Permission.TRADE}))


def send_one(client: Any, profile: Any, kind: str, client_id: str) -> int | str:
    """Send one order (an IOC buy far below the price: cancelled at once) or one order query.

    Returns the HTTP status, ``"halted"`` when the client refused locally (suspended key or
    banned host), or ``"error"`` for a transport failure.
    """
    from treasury.errors import ExchangeError, ExchangeHalted

    try:
        if kind == "order":
            params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC",
                      "price": "1", "quantity": "0.001", "newClientOrderId": client_id}
            return int(client.call("spot_order", profile, params).status)
        return int(client.call("open_orders", profile, {"symbol": "BTCUSDT"}).status)
    except ExchangeHalted:
        return "halted"
    except ExchangeError as exc:
        return int(exc.status) if exc.status is not None else "error"


def classify(status: int | str) -> str:
    """ok (the exchange admitted it: any answer but 429/418), 429, 418, halted or error."""
    if status in (429, 418):
        return str(status)
    if isinstance(status, int):
        return "ok"
    return str(status)
