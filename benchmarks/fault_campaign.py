"""Benchmark 6: the fault campaign. Money-moving runs on Celery workers under every fault at once.

``--ops`` one-step runs (a third each: internal transfers, VA withdrawals, spot orders) go
through the whole system: the run service, Celery workers (``--workers`` processes with
``--concurrency`` each), PostgreSQL, a Redis server of the campaign's own, and the simulator
over HTTP behind a TCP proxy. While they run:

- about 30 % of the money-moving requests meet an ambiguous fault: the simulator's
  ``error_after``, ``timeout_after``, ``reset_after`` and ``error_before`` modes, plus the
  proxy, which forwards the request and then drops the connection before the answer; another
  5 % get a ``latency`` fault (0.5 s);
- a worker (parent and pool children) is SIGKILLed every 10 to 30 s and a fresh one started;
- the campaign's Redis server (broker and shared rate limiter) is stopped and restarted once,
  half way through (``redis-server --port 6390 --appendonly yes``; the shared server on 6379
  is never touched);
- a beat process runs the sweeper every ``--sweep-interval`` seconds.

Rate limits stay on, at ten times HashKey's (100 orders/s, 20 queries/s, 10 transfers/s per
key) on both sides, so that the campaign finishes in minutes and 429s are still counted. The
penalties (60 s suspension after a 429, 418 host ban) are off unless ``--penalties``: with them
one 429 halts the key for a minute and a 418 halts everything until a person resumes, which
is right in production but ends the campaign (measured: see benchmarks/README.md).
Afterwards every step is checked against the simulator's ledger:

- duplicates: a client id with more than one effect, and re-sends of a request that had
  already taken effect (refused by the exchange as a duplicate client id);
- lost: a run that never finished, a SUCCEEDED step without its effect, a FAILED step with one,
  or an effect no step owns;
- the outcome counts, the median time from an unknown outcome to its settlement, the 429 and
  418 answers, whether the audit chain verifies, and the workers' peak RSS;
- for every execution record a killed worker held, the time from the kill until its step
  finished (record reconciled, step re-dispatched and done): median, p95 and max.

    python benchmarks/fault_campaign.py --ops 10000
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

ADDRESS = "0x5b1f7c1a3e2d4f6a8b9c0d1e2f3a4b5c6d7e8f90"
PATHS = {
    "asset_transfer": "/api/v1/account/assetTransfer",
    "withdraw": "/api/v1/account/withdraw",
    "spot_order": "/api/v1.1/spot/order",
}
WORKFLOWS = {
    "asset_transfer": """\
name: campaign-transfer
description: one internal transfer
steps:
  - id: move
    op: asset_transfer
    key: transfers
    params: {fromAccountId: "1001", toAccountId: "1002", coin: USDT, quantity: "1"}
""",
    "withdraw": f"""\
name: campaign-withdraw
description: one VA withdrawal
steps:
  - id: move
    op: withdraw
    key: withdrawals
    params: {{coin: USDT, chainType: ETH, address: "{ADDRESS}", quantity: "2"}}
""",
    "spot_order": """\
name: campaign-order
description: one spot order
steps:
  - id: move
    op: spot_order
    key: trading
    params: {symbol: BTCUSDT, side: BUY, type: LIMIT, timeInForce: IOC, price: "1", quantity: "0.001"}
""",
}
# Each rule fires on its share of the draws it gets; with the proxy's drops about 30 % of the
# money-moving requests end ambiguously: 1 - 0.93*0.94*0.93*0.94*0.915 = 0.30.
AMBIGUOUS = [("error_after", 0.07), ("timeout_after", 0.06), ("reset_after", 0.07), ("error_before", 0.06)]
PROXY_DROP = 0.085
LATENCY = 0.05
SCALE = 10  # rate limits at ten times HashKey's, on the exchange and in the client
TERMINAL = ("SUCCEEDED", "FAILED", "NEEDS_ATTENTION", "CANCELLED", "REJECTED", "EXPIRED")


def fault_rules(http_timeout: float) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in PATHS.values():
        rules.append({"method": "POST", "path": path, "mode": "latency", "seconds": 0.5, "probability": LATENCY})
        for mode, p in AMBIGUOUS:
            rule: dict[str, Any] = {"method": "POST", "path": path, "mode": mode, "probability": p}
            if mode in ("error_after", "error_before"):
                rule["status"] = 500
            if mode == "timeout_after":
                rule["seconds"] = http_timeout + 1
            rules.append(rule)
    return rules


# --------------------------------------------------------------------------- the proxy


class DropProxy:
    """A TCP proxy that forwards each request and, for a share of the money-moving POSTs,
    closes both connections instead of relaying the answer (the request took effect; the
    client never learns it)."""

    def __init__(self, upstream: tuple[str, int], drop: float, seed: int) -> None:
        self.upstream = upstream
        self.drop = drop
        self.rng = random.Random(seed)
        self.dropped: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name="drop-proxy").start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=30)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(None)
            armed: list[str] = []
            threading.Thread(target=self._requests, args=(client, upstream, armed), daemon=True).start()
            threading.Thread(target=self._answers, args=(client, upstream, armed), daemon=True).start()

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _requests(self, client: socket.socket, upstream: socket.socket, armed: list[str]) -> None:
        try:
            while data := client.recv(65536):
                if data.startswith(b"POST "):
                    path = data.split(b" ", 2)[1].split(b"?")[0].decode(errors="replace")
                    if path in PATHS.values():
                        armed[:] = [path]
                upstream.sendall(data)
        except OSError:
            pass
        self._close(upstream)

    def _answers(self, client: socket.socket, upstream: socket.socket, armed: list[str]) -> None:
        try:
            while data := upstream.recv(65536):
                if armed:
                    path = armed.pop()
                    with self.lock:
                        drop = self.rng.random() < self.drop
                        if drop:
                            self.dropped[path] += 1
                    if drop:
                        break
                client.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()


# --------------------------------------------------------------------------- our own redis


class OwnRedis:
    """A redis-server of the campaign's own (AOF on, no RDB), restartable on the same files."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--dir", str(self.folder), "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        import redis

        def up() -> bool:
            try:
                return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
            except Exception:
                return False

        common.wait_for(up, 20, f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean stop: the AOF is flushed
            self.proc.wait(timeout=20)


# --------------------------------------------------------------------------- counting answers


class AnswerCounter:
    """Counts the simulator's answers: statuses, duplicate-client-id refusals, per client id."""

    def __init__(self, sim: Any) -> None:
        self.status: Counter[int] = Counter()
        self.duplicates: Counter[str] = Counter()
        self.lock = threading.Lock()
        dup_codes = {"-1024", "-1141"}
        inner = sim.process

        def counted(req: Any, **kw: Any) -> Any:
            answer = inner(req, **kw)
            with self.lock:
                self.status[answer.status] += 1
                body = answer.body if isinstance(answer.body, dict) else {}
                if req.method == "POST" and str(body.get("code")) in dup_codes:
                    params = parse_qs(req.query) | parse_qs(req.body.decode(errors="replace"))
                    cid = (params.get("clientOrderId") or params.get("newClientOrderId") or [""])[0]
                    self.duplicates[cid] += 1
            return answer

        sim.process = counted


# --------------------------------------------------------------------------- analysis


def _at(value: Any) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def reconcile_seconds(engine: Any) -> list[float]:
    """Seconds from each record's first UNKNOWN to its final state, from the audit log."""
    from sqlalchemy import select

    from treasury.audit.tables import audit_events

    first: dict[str, datetime] = {}
    settled: dict[str, datetime] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(audit_events.c.at, audit_events.c.payload)
                            .where(audit_events.c.type == "execution.state").order_by(audit_events.c.seq))
        for at, payload in rows:
            data = payload if isinstance(payload, dict) else json.loads(payload)
            cid, to = str(data.get("client_id")), data.get("to")
            if to == "UNKNOWN":
                first.setdefault(cid, _at(at))
            elif to in ("SUCCEEDED", "FAILED", "NEEDS_ATTENTION") and cid in first:
                settled[cid] = _at(at)
    return [(settled[c] - first[c]).total_seconds() for c in settled]


def held_by(engine: Any, pids: list[int]) -> list[str]:
    """Client ids of unfinished execution records whose lease a process in ``pids`` holds.

    A lease owner reads ``worker:<host>:<pid>#<call>`` (``StepExecutor``'s default owner).
    """
    from sqlalchemy import select

    from treasury.store.tables import execution_records as T

    wanted = {str(p) for p in pids}
    with engine.connect() as conn:
        rows = conn.execute(select(T.c.client_id, T.c.lease_owner)
                            .where(T.c.state.in_(["PREPARED", "SENDING", "UNKNOWN"]), T.c.lease_owner.is_not(None)))
        return [cid for cid, owner in rows if str(owner).split("#")[0].rsplit(":", 1)[-1] in wanted]


def recovery_seconds(engine: Any, holds: list[tuple[datetime, list[str]]]) -> list[float | None]:
    """For each record a killed worker held: seconds from the kill until its step finished (the
    record reconciled, the step re-dispatched and done); None for a step that never finished."""
    from sqlalchemy import select

    from treasury.store.tables import execution_records as T
    from treasury.store.tables import steps

    out: list[float | None] = []
    with engine.connect() as conn:
        for killed_at, cids in holds:
            for cid in cids:
                row = conn.execute(select(steps.c.finished_at)
                                   .select_from(T.join(steps, (steps.c.run_id == T.c.run_id)
                                                       & (steps.c.step_id == T.c.step_id)))
                                   .where(T.c.client_id == cid)).first()
                done = _at(row.finished_at) if row is not None and row.finished_at is not None else None
                out.append(max(0.0, (done - killed_at).total_seconds()) if done is not None else None)
    return out


def run_states(engine: Any, run_ids: list[str]) -> dict[str, str]:
    from sqlalchemy import select

    from treasury.store.tables import runs

    out: dict[str, str] = {}
    with engine.connect() as conn:
        for i in range(0, len(run_ids), 2000):
            chunk = run_ids[i:i + 2000]
            out.update({rid: st for rid, st in conn.execute(select(runs.c.id, runs.c.state)
                                                             .where(runs.c.id.in_(chunk)))})
    return out


def analyse(engine: Any, submitted: list[tuple[str, str]], state: dict[str, Any],
            counter: AnswerCounter) -> dict[str, Any]:
    from treasury.execution import client_id_for

    effects: Counter[str] = Counter()
    for kind in ("transfers", "withdrawals"):
        effects.update(e["clientOrderId"] for e in state[kind] if e.get("clientOrderId"))
    effects.update(o["clientOrderId"] for o in state["orders"] if o.get("clientOrderId"))
    states = run_states(engine, [rid for rid, _ in submitted])
    outcome: Counter[str] = Counter()
    by_op: dict[str, Counter[str]] = {op: Counter() for op in PATHS}
    unfinished, succeeded_no_effect, failed_with_effect = [], [], []
    ours = set()
    for rid, op in submitted:
        cid = client_id_for(rid, "move")
        ours.add(cid)
        st = states.get(rid, "MISSING")
        outcome[st] += 1
        by_op[op][st] += 1
        if st not in TERMINAL:
            unfinished.append(rid)
        elif st == "SUCCEEDED" and effects[cid] == 0:
            succeeded_no_effect.append(rid)
        elif st == "FAILED" and effects[cid] > 0:
            failed_with_effect.append(rid)
    dup_effects = sorted(c for c, n in effects.items() if n > 1)
    stray = sorted(c for c in effects if c.startswith("T") and c not in ours)
    na_with_effect = sum(1 for rid, _ in submitted if states.get(rid) == "NEEDS_ATTENTION"
                         and effects[client_id_for(rid, "move")] > 0)
    return {
        "outcomes": dict(outcome),
        "outcomes_by_operation": {op: dict(c) for op, c in by_op.items()},
        "duplicates": len(dup_effects) + sum(counter.duplicates.values()),
        "duplicate_effects": len(dup_effects),
        "resends_refused_as_duplicate": sum(counter.duplicates.values()),
        "resends_refused_examples": list(counter.duplicates)[:5],
        "lost": len(unfinished) + len(succeeded_no_effect) + len(failed_with_effect) + len(stray),
        "unfinished_runs": len(unfinished),
        "unfinished_examples": unfinished[:5],
        "succeeded_without_effect": len(succeeded_no_effect),
        "failed_with_effect": len(failed_with_effect),
        "effects_without_step": len(stray),
        "needs_attention_with_effect": na_with_effect,
        "needs_attention_without_effect": outcome.get("NEEDS_ATTENTION", 0) - na_with_effect,
    }


# --------------------------------------------------------------------------- the campaign


def campaign(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from treasury.audit import verify_chain
    from treasury.broker.dispatch import CeleryDispatcher
    from treasury.broker.options import WorkerOptions
    from treasury.runtime import build_runtime
    from treasury.schema import create_schema
    from treasury.settings import RateLimits, Settings
    from treasury.simulator import Simulator, serve
    from treasury.store.db import make_engine

    rng = random.Random(args.seed)
    redis_dir = tmp / "redis"
    redis_dir.mkdir()
    own = OwnRedis(args.redis_port, redis_dir)
    own.start()
    limits = {"query": 2 * SCALE, "order": 10 * SCALE, "transfer": 1 * SCALE}
    penalty = 60 if args.penalties else 0  # 0: a 429 refuses that one request, nothing more
    sim = Simulator(common.sim_config(rate_limits={**limits, "suspension_seconds": penalty,
                                                   "ban_seconds": 300 if args.penalties else 0},
                                      timeout_after_seconds=args.http_timeout + 1), seed=args.seed)
    sim.set_faults(fault_rules(args.http_timeout))
    counter = AnswerCounter(sim)
    server = serve(sim)
    proxy = DropProxy(("127.0.0.1", server.port), PROXY_DROP, args.seed)
    queue = f"campaign-{secrets.token_hex(3)}"
    config_dir = common.copy_config(tmp / "config", policy=True)
    workflows_dir = tmp / "workflows"
    workflows_dir.mkdir()
    # settle = HTTP timeout + recvWindow + margin (the minimum Settings allow): 1 + 2 + 0.5 s by default
    timing = {"TREASURY_HTTP_TIMEOUT_SECONDS": str(args.http_timeout), "TREASURY_RECV_WINDOW_MS": "2000",
              "TREASURY_SETTLE_MARGIN_SECONDS": "0.5",
              "TREASURY_RECONCILE_DEADLINE_SECONDS": str(args.deadline),
              "TREASURY_RATE_LIMITS__QUERY": str(limits["query"]), "TREASURY_RATE_LIMITS__ORDER": str(limits["order"]),
              "TREASURY_RATE_LIMITS__TRANSFER": str(limits["transfer"]),
              "TREASURY_RATE_LIMITS__SUSPENSION_SECONDS": str(penalty),
              "TREASURY_VISIBILITY_TIMEOUT": str(args.visibility), "TREASURY_ALLOW_SHORT_VISIBILITY": "true",
              "TREASURY_LEASE_SECONDS": str(args.lease), "TREASURY_SWEEP_OLDER_THAN": str(args.sweep_older_than),
              "TREASURY_SWEEP_INTERVAL": str(args.sweep_interval), "TREASURY_BEAT_INTERVAL": "60"}
    kills: list[float] = []
    holds: list[tuple[datetime, list[str]]] = []  # (kill time, client ids the victim held)
    gone: set[str] = set()  # workers killed by the campaign or found exited
    exits: list[str] = []  # workers that exited on their own (restarted, as a supervisor would)
    events: list[str] = []
    started = time.monotonic()
    with common.pg_schema("bench_campaign") as db_url:
        engine = make_engine(db_url)
        create_schema(engine)
        settings = Settings(database_url=db_url, base_url=proxy.url, config_dir=config_dir, broker_url=own.url,
                            workflows_dir=workflows_dir, http_timeout_seconds=args.http_timeout, recv_window_ms=2000,
                            settle_margin_seconds=0.5,
                            reconcile_deadline_seconds=args.deadline,
                            rate_limits=RateLimits(query=limits["query"], order=limits["order"],
                                                   transfer=limits["transfer"], suspension_seconds=penalty))
        options = WorkerOptions(queue=queue, visibility_timeout=args.visibility, allow_short_visibility=True)
        rt = build_runtime(settings, engine=engine, dispatcher=CeleryDispatcher(settings, options=options))
        service = rt.service
        loaded = {op: service.load_and_check(text, source=f"campaign-{op}.yaml") for op, text in WORKFLOWS.items()}
        env = common.worker_env(broker=own.url, database=db_url, base_url=proxy.url, config_dir=config_dir,
                                queue=queue, workflows_dir=workflows_dir, **timing)
        cluster = common.Cluster(env=env, tmp=tmp, queue=queue)
        beat = subprocess.Popen([common.PYTHON, "-m", "celery", "-A", "treasury.worker", "beat", "-l", "INFO",
                                 "-s", str(tmp / "beat-schedule")], env=env, cwd=tmp,
                                stdout=(tmp / "beat.log").open("ab"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        submitted: list[tuple[str, str]] = []
        stop = threading.Event()
        done_submitting = threading.Event()
        serial = [0]
        try:
            for _ in range(args.workers):
                serial[0] += 1
                cluster.start(f"w{serial[0]}", concurrency=args.concurrency)
            for w in cluster.workers:
                common.wait_for(w.ready, 90, f"worker {w.name} to be ready")

            def submit() -> None:
                ops = list(PATHS)
                open_runs: set[str] = set()
                i = 0
                submit_until = started + args.submit_seconds if args.submit_seconds else float("inf")
                while i < args.ops and not stop.is_set() and time.monotonic() < submit_until:
                    try:
                        finished = {r for r, st in run_states(engine, list(open_runs)).items() if st in TERMINAL}
                    except Exception:  # keep submitting through a database hiccup
                        finished = set()
                    open_runs -= finished
                    room = args.inflight - len(open_runs)
                    for _ in range(max(0, min(room, args.ops - i, 50))):
                        op = ops[i % 3]
                        try:
                            rid = service.start(loaded[op], {}, requested_by="erin")
                        except Exception as exc:  # the database or broker hiccuped: try again
                            events.append(f"{time.monotonic() - started:.1f}s start failed: {type(exc).__name__}")
                            time.sleep(0.5)
                            break
                        submitted.append((rid, op))
                        open_runs.add(rid)
                        i += 1
                    time.sleep(0.2)
                done_submitting.set()

            def chaos() -> None:
                restarted = False
                next_kill = time.monotonic() + rng.uniform(10, 30)
                while not stop.is_set():
                    time.sleep(0.2)
                    cluster.sample_rss()
                    for w in list(cluster.workers):  # a supervisor restarts a worker that exited
                        if not w.alive() and w.name not in gone:
                            gone.add(w.name)
                            exits.append(w.name)
                            serial[0] += 1
                            cluster.start(f"w{serial[0]}", concurrency=args.concurrency)
                            events.append(f"{time.monotonic() - started:.1f}s {w.name} exited on its own "
                                          f"(code {w.proc.returncode}), started w{serial[0]}")
                    if not restarted and len(submitted) >= args.ops // 2:
                        restarted = True
                        events.append(f"{time.monotonic() - started:.1f}s redis stopped")
                        own.stop()
                        time.sleep(args.redis_down)
                        own.start()
                        events.append(f"{time.monotonic() - started:.1f}s redis started again")
                    if time.monotonic() >= next_kill and args.kill:
                        live = cluster.live()
                        if live:
                            victim = rng.choice(live)
                            pids = [victim.proc.pid, *common.child_pids(victim.proc.pid)]
                            gone.add(victim.name)
                            victim.kill9()
                            killed_at = datetime.now(UTC)
                            kills.append(time.monotonic() - started)
                            try:  # what it held stays as it was: nobody may touch it until its lease ends
                                holds.append((killed_at, held_by(engine, pids)))
                            except Exception as exc:  # Redis or the database hiccuped; skip this one
                                events.append(f"{kills[-1]:.1f}s held records not read: {type(exc).__name__}")
                            serial[0] += 1
                            cluster.start(f"w{serial[0]}", concurrency=args.concurrency)
                            events.append(f"{kills[-1]:.1f}s killed {victim.name}, started w{serial[0]}")
                        next_kill = time.monotonic() + rng.uniform(10, 30)

            threads = [threading.Thread(target=submit, daemon=True), threading.Thread(target=chaos, daemon=True)]
            for t in threads:
                t.start()
            deadline = started + args.timeout
            last_print = 0.0
            while time.monotonic() < deadline:
                time.sleep(0.5)
                if not done_submitting.is_set():
                    continue
                states = run_states(engine, [r for r, _ in submitted])
                left = sum(1 for st in states.values() if st not in TERMINAL)
                if time.monotonic() - last_print > 15:
                    last_print = time.monotonic()
                    print(f"  {time.monotonic() - started:.0f}s: {len(submitted)} submitted, {left} unfinished, "
                          f"{len(kills)} kills", flush=True)
                if left == 0:
                    break
            stop.set()
            for t in threads:
                t.join(timeout=60)
            wall = time.monotonic() - started
        finally:
            stop.set()
            cluster.stop_all()
            beat.send_signal(signal.SIGTERM)
            try:
                beat.wait(timeout=15)
            except subprocess.TimeoutExpired:
                beat.kill()
        state = sim.state()
        result = analyse(engine, submitted, state, counter)
        times = reconcile_seconds(engine)
        recoveries = recovery_seconds(engine, holds)
        chain = verify_chain(engine)
        engine.dispose()
    server.shutdown()
    proxy.close()
    own.stop()
    faults = {f"{r['path'].rsplit('/', 1)[-1]}:{r['mode']}": r["fired"] for r in state["faults"]}
    dropped = {p.rsplit("/", 1)[-1]: n for p, n in proxy.dropped.items()}
    ambiguous = sum(n for k, n in faults.items() if not k.endswith(":latency")) + sum(dropped.values())
    peaks = [max(w.peak_rss_mb.values()) for w in cluster.workers if w.peak_rss_mb]
    parent_peaks = [w.peak_rss_mb.get(w.proc.pid) for w in cluster.workers if w.proc.pid in w.peak_rss_mb]
    return {
        **result,
        "ops": args.ops,
        "submitted": len(submitted),
        "wall_seconds": round(wall, 1),
        "ops_per_second": round(len(submitted) / wall, 2) if wall else None,
        "faults_fired": faults,
        "proxy_dropped": dropped,
        "ambiguous_faults": ambiguous,
        "ambiguous_fraction_of_ops": round(ambiguous / max(1, len(submitted)), 3),
        "worker_kills": len(kills),
        "worker_exits": len(exits),
        "redis_restarts": sum(1 for e in events if "redis started again" in e),
        "events": events[:200],
        "reconciled": len(times),
        "reconcile_seconds_median": round(statistics.median(times), 3) if times else None,
        "reconcile_seconds_p95": round(common.percentile(times, 95) or 0, 3) if times else None,
        "killed_steps": len(recoveries),
        "killed_steps_unrecovered": sum(1 for r in recoveries if r is None),
        "kill_to_recovered_seconds_median": _stat(recoveries, 50),
        "kill_to_recovered_seconds_p95": _stat(recoveries, 95),
        "kill_to_recovered_seconds_max": _stat(recoveries, 100),
        "answers_429": counter.status.get(429, 0),
        "answers_418": counter.status.get(418, 0),
        "penalties": args.penalties,
        "answers_by_status": {str(k): v for k, v in sorted(counter.status.items())},
        "audit_chain_ok": bool(chain.ok),
        "audit_chain": chain.to_dict() if hasattr(chain, "to_dict") else str(chain),
        "worker_peak_rss_mb": max(peaks) if peaks else None,
        "worker_parent_peak_rss_mb": max((p for p in parent_peaks if p), default=None),
        "worker_processes_sampled": sum(len(w.peak_rss_mb) for w in cluster.workers),
    }


def _stat(values: list[float | None], pct: float) -> float | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return round(max(known) if pct >= 100 else (common.percentile(known, pct) or 0.0), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=10_000, help="money-moving runs (default 10,000)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2, for 2 cores)")
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes per worker (default 4)")
    parser.add_argument("--inflight", type=int, default=200, help="runs in flight at most (default 200)")
    parser.add_argument("--http-timeout", type=float, default=1.0, help="client HTTP timeout, s (default 1)")
    parser.add_argument("--deadline", type=float, default=60.0, help="reconcile deadline, s (default 60)")
    parser.add_argument("--lease", type=float, default=20.0, help="execution lease, s (default 20, as shipped)")
    parser.add_argument("--visibility", type=int, default=30, help="broker visibility timeout, s (default 30)")
    parser.add_argument("--sweep-interval", type=float, default=15.0,
                        help="beat's sweep interval, s (default 15, as shipped)")
    parser.add_argument("--sweep-older-than", type=float, default=45.0,
                        help="sweeper staleness, s (default 45, as shipped)")
    parser.add_argument("--redis-port", type=int, default=6390,
                        help="port of the campaign's own redis-server (default 6390; 0 picks a free one)")
    parser.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis stays down (default 3)")
    parser.add_argument("--no-kill", dest="kill", action="store_false", help="do not SIGKILL workers")
    parser.add_argument("--penalties", action="store_true",
                        help="keep HashKey's 60 s suspension after a 429 and the 418 host ban (off by default: "
                             "one 429 then halts the key, and a 418 the whole campaign, until a person resumes)")
    parser.add_argument("--submit-seconds", type=float, default=0.0,
                        help="stop submitting after this many seconds even if --ops is not reached "
                             "(the largest count that fits; 0: no limit)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--quick", action="store_true", help="30 runs, 1 worker, no kills, short timings")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.ops, args.workers, args.concurrency, args.kill, args.redis_down = 30, 1, 2, False, 0.3
        args.redis_port, args.http_timeout, args.deadline, args.lease = 0, 0.5, 10.0, 5.0
        args.sweep_interval, args.sweep_older_than = 2.0, 3.0
    if args.redis_port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            args.redis_port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-campaign-") as tmp:
        result = campaign(args, Path(tmp))
    out = result["outcomes"]
    common.print_table(
        f"Fault campaign: {result['submitted']:,} money-moving runs, {result['ambiguous_faults']:,} ambiguous faults "
        f"({result['ambiguous_fraction_of_ops']:.0%}), {result['worker_kills']} worker kills "
        f"({result['worker_exits']} exits restarted), "
        f"{result['redis_restarts']} Redis restart(s), {result['wall_seconds']:.0f} s",
        ["measure", "value", "must be"],
        [["duplicates", result["duplicates"], 0],
         ["  re-sends refused as duplicate client id", result["resends_refused_as_duplicate"], 0],
         ["lost", result["lost"], 0],
         ["  unfinished runs", result["unfinished_runs"], 0],
         ["SUCCEEDED", out.get("SUCCEEDED", 0), ""],
         ["FAILED", out.get("FAILED", 0), ""],
         ["NEEDS_ATTENTION", out.get("NEEDS_ATTENTION", 0), ""],
         ["median time to reconcile (s)", result["reconcile_seconds_median"], ""],
         ["steps a killed worker held / not recovered", f"{result['killed_steps']} / "
          f"{result['killed_steps_unrecovered']}", "- / 0"],
         ["kill -> recovered, median / p95 / max (s)", f"{result['kill_to_recovered_seconds_median']} / "
          f"{result['kill_to_recovered_seconds_p95']} / {result['kill_to_recovered_seconds_max']}", "max < 60"],
         ["429 answers", result["answers_429"], 0],
         ["418 answers", result["answers_418"], 0],
         ["audit chain verifies", result["audit_chain_ok"], True],
         ["worker peak RSS (MiB)", result["worker_peak_rss_mb"], "<= 150"]],
    )
    common.write_result("fault_campaign", result, args, args.out)
    bad = result["duplicates"] or result["lost"] or result["answers_418"] or not result["audit_chain_ok"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
