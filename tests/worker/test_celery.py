"""Steps on real Celery worker processes: two workers, SIGKILL mid-request, duplicate messages,
lost messages, graceful shutdown. Every money effect is counted in the simulator's ledger."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.worker.conftest import TWO_TRANSFERS, Cluster, arrival, child_pids, effects, wait_for
from treasury.audit import query_events
from treasury.broker.app import EXECUTE_STEP, SWEEP
from treasury.execution import client_id_for
from treasury.simulator import SimulatorServer
from treasury.store.tables import execution_records
from treasury.worker.process import WorkerRuntime, build_worker_runtime

pytestmark = [pytest.mark.celery, pytest.mark.redis, pytest.mark.postgres, pytest.mark.xdist_group("celery")]

TRANSFER = "/api/v1/account/assetTransfer"


class Recorder:
    """A dispatcher that only remembers: the test decides what reaches the broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def dispatch(self, run_id: str, step_id: str) -> None:
        self.sent.append((run_id, step_id))

    def flush(self, service: object) -> None:
        pass


def _runtime(cluster: Cluster) -> WorkerRuntime:
    """The test process's own runtime: same database and broker, dispatching to the test queue."""
    return build_worker_runtime(cluster.settings, cluster.options, engine=cluster.engine)


def _start(wrt: WorkerRuntime, workflows_dir: Path, *, kick: bool = True) -> str:
    service = wrt.runtime.service
    loaded = service.load_and_check(TWO_TRANSFERS, source=str(workflows_dir / "two-transfers.yaml"))
    if kick:
        return str(service.start(loaded, {}, requested_by="alice"))
    with wrt.runtime.engine.begin() as conn:  # committed, but its kick is "lost"
        return str(service.create_run(conn, loaded, {}, requested_by="alice",
                                      request=service.sign_request(loaded, {}, "alice")))


def _finished(cluster: Cluster, run_id: str, timeout: float) -> str:
    return str(wait_for(lambda: cluster.run_state(run_id) in ("SUCCEEDED", "FAILED", "NEEDS_ATTENTION")
                        and cluster.run_state(run_id), timeout, f"run {run_id} to finish",
                        detail=cluster.diagnostics))


def _assert_one_effect_per_step(sim: SimulatorServer, run_id: str) -> None:
    for step in ("first", "second"):
        found = effects(sim, client_id_for(run_id, step))
        assert len(found) == 1, f"step {step}: {len(found)} effects"


def test_runs_through_two_worker_processes(cluster: Cluster, sim: SimulatorServer, workflows_dir: Path) -> None:
    w1, w2 = cluster.start_ready("w1", "w2")
    wrt = _runtime(cluster)
    started = time.monotonic()
    run_ids = [_start(wrt, workflows_dir) for _ in range(2)]
    for run_id in run_ids:
        assert _finished(cluster, run_id, 40) == "SUCCEEDED"
    elapsed = time.monotonic() - started
    for run_id in run_ids:
        _assert_one_effect_per_step(sim, run_id)
    # both processes took steps; the transfer rate limit (1/s per key) bounds the pace
    assert w1.received() > 0 and w2.received() > 0, (w1.received(), w2.received())
    assert w1.received() + w2.received() >= 4
    print(f"\n4 transfer steps through 2 workers in {elapsed:.2f}s ({4 / elapsed:.2f} steps/s)")


@pytest.mark.parametrize("victim", ["worker", "child"])
def test_sigkill_mid_transfer_completes_elsewhere_with_one_effect(
    cluster: Cluster, sim: SimulatorServer, workflows_dir: Path, victim: str
) -> None:
    # The request reaches the exchange and is held 2 s; the process running the step dies
    # meanwhile, its execution record SENDING under a 1 s lease.
    # - "worker" (parent and children killed): Redis hands the unacknowledged message to w2
    #   after the 3 s visibility timeout, and w2's start-up sweep looks at the stale record.
    # - "child": the parent re-queues the message at once (task_reject_on_worker_lost); the
    #   lease is still held, so that delivery is turned away, and beat's sweeper re-dispatches
    #   the step once the lease has run out.
    # Either way the transfer is found by its client id and recorded: one effect.
    sim.simulator.set_faults([{"method": "POST", "path": TRANSFER, "mode": "latency", "seconds": 2, "count": 1}])
    in_flight = arrival(sim, TRANSFER)
    # The lease and what counts as stale are the workers' settings; how often to sweep is beat's.
    # The settle window (how long after a send an "absent" lookup is believed) is longer than
    # the 2 s the exchange holds the request, so the record is found by lookup rather than
    # re-sent under the same client id (which the exchange would refuse as a duplicate anyway).
    # The killed request got no answer, so it holds its rate-limit place for the HTTP timeout
    # plus recvWindow (it might still arrive); the next transfer waits for that. Shorter here.
    timing = {"TREASURY_LEASE_SECONDS": "1", "TREASURY_SWEEP_OLDER_THAN": "0.5", "TREASURY_SETTLE_SECONDS": "5",
              "TREASURY_HTTP_TIMEOUT_SECONDS": "3", "TREASURY_RECV_WINDOW_MS": "1000"}
    (w1,) = cluster.start_ready("w1", **timing)
    if victim == "child":
        cluster.start_beat(TREASURY_SWEEP_INTERVAL="1")
    wrt = _runtime(cluster)
    run_id = _start(wrt, workflows_dir)
    cid = client_id_for(run_id, "first")
    wait_for(in_flight.is_set, 20, "the first transfer to reach the exchange", interval=0.01)
    if victim == "worker":
        w1.kill9()  # inside the 2 s the simulator holds the request
    else:
        (child,) = child_pids(w1.proc.pid)
        os.kill(child, signal.SIGKILL)
    assert effects(sim, cid) == []  # nothing recorded yet: the exchange is still working on it
    cluster.start_ready("w2", **timing)
    assert _finished(cluster, run_id, 40) == "SUCCEEDED"
    _assert_one_effect_per_step(sim, run_id)
    types = [e.type for e in query_events(cluster.engine, run_id=run_id)]
    assert "reconcile.verdict" in types  # recovered by looking it up, not by sending again
    # Normally that is the one send. On a machine stalled for longer than the settle window a
    # lookup can come back empty while the exchange still holds the first request; the second
    # send then reuses the client id, and the exchange refuses it as a duplicate.
    sent = [e for e in query_events(cluster.engine, run_id=run_id, type="request.sent") if e.step_id == "first"]
    assert sent and {e.payload["client_id"] for e in sent} == {cid}
    if victim == "child":  # the parent noticed and re-queued (it may notice after w2 finished)
        wait_for(lambda: "WorkerLostError" in w1.text(), 15, "w1 to report its lost child")


def test_duplicate_message_on_two_workers_moves_money_once(
    cluster: Cluster, sim: SimulatorServer, workflows_dir: Path
) -> None:
    sim.simulator.set_faults([{"method": "POST", "path": TRANSFER, "mode": "latency", "seconds": 1, "count": 1}])
    cluster.start_ready("w1", "w2")
    wrt = _runtime(cluster)
    recorder = Recorder()
    wrt.runtime.service.ctx.dispatcher = recorder
    run_id = _start(wrt, workflows_dir)
    assert recorder.sent == [(run_id, "first")]
    producer = wrt.dispatcher.app
    for _ in range(2):  # the same step, twice at once: as a redelivery racing the original would
        producer.send_task(EXECUTE_STEP, args=[run_id, "first"], queue=cluster.queue)
    assert _finished(cluster, run_id, 40) == "SUCCEEDED"
    _assert_one_effect_per_step(sim, run_id)
    suppressed = list(query_events(cluster.engine, run_id=run_id, type="execution.duplicate_suppressed"))
    # the second copy found the first one's lease (a step slower than the 3 s visibility timeout
    # may also be redelivered and turned away the same way)
    assert "first" in {e.step_id for e in suppressed}


def test_lost_messages_are_recovered_by_the_sweeper(
    cluster: Cluster, sim: SimulatorServer, workflows_dir: Path
) -> None:
    # What a Redis restart without persistence leaves behind: runs whose kick never reached a
    # worker (PENDING) and steps whose message vanished (RUNNING). Only the database knows them.
    wrt = _runtime(cluster)
    pending = _start(wrt, workflows_dir, kick=False)
    dispatcher = wrt.runtime.service.ctx.dispatcher
    wrt.runtime.service.ctx.dispatcher = Recorder()  # the message for its first step is "lost"
    running = _start(wrt, workflows_dir)
    wrt.runtime.service.ctx.dispatcher = dispatcher
    assert (cluster.run_state(pending), cluster.run_state(running)) == ("PENDING", "RUNNING")
    cluster.start_ready("w1", TREASURY_SWEEP_OLDER_THAN="0")
    # the sweep a worker runs when it starts re-drives both
    assert _finished(cluster, pending, 30) == "SUCCEEDED"
    assert _finished(cluster, running, 30) == "SUCCEEDED"
    later = _start(wrt, workflows_dir, kick=False)
    time.sleep(0.05)
    assert cluster.run_state(later) == "PENDING"
    wrt.dispatcher.app.send_task(SWEEP, queue=cluster.queue)  # what beat sends every minute
    assert _finished(cluster, later, 30) == "SUCCEEDED"
    for run_id in (pending, running, later):
        _assert_one_effect_per_step(sim, run_id)


def test_warm_shutdown_finishes_the_step_in_flight(
    cluster: Cluster, sim: SimulatorServer, workflows_dir: Path
) -> None:
    sim.simulator.set_faults([{"method": "POST", "path": TRANSFER, "mode": "latency", "seconds": 1.5, "count": 1}])
    in_flight = arrival(sim, TRANSFER)
    (w1,) = cluster.start_ready("w1")
    wrt = _runtime(cluster)
    run_id = _start(wrt, workflows_dir)
    cid = client_id_for(run_id, "first")
    wait_for(in_flight.is_set, 20, "the first transfer to reach the exchange", interval=0.01)
    os.kill(w1.proc.pid, signal.SIGTERM)
    assert w1.proc.wait(timeout=30) == 0
    assert len(effects(sim, cid)) == 1
    with cluster.engine.connect() as conn:
        state = conn.execute(select(execution_records.c.state)
                             .where(execution_records.c.client_id == cid)).scalar_one()
    assert state == "SUCCEEDED"  # finished and recorded before the worker left


def test_a_killed_workers_step_is_recovered_within_a_minute(
    cluster: Cluster, sim: SimulatorServer, workflows_dir: Path
) -> None:
    # The shipped timing: a 20 s lease renewed every 5 s, beat sweeping every 15 s. The whole
    # worker holding a transfer the exchange takes 4 s over is SIGKILLed; Redis would hand its
    # message on only after the (hour-long) visibility timeout, so recovery is the sweeper's:
    # once the lease has run out, one sweep finds the transfer by its client id and re-dispatches
    # the step, and the run moves on, within a minute of the kill. One effect per step.
    sim.simulator.set_faults([{"method": "POST", "path": TRANSFER, "mode": "latency", "seconds": 4, "count": 1}])
    in_flight = arrival(sim, TRANSFER)
    # the exchange's own timing too: a request held 4 s is still inside its 5 s recvWindow
    shipped = {"TREASURY_VISIBILITY_TIMEOUT": "3600", "TREASURY_SETTLE_SECONDS": "16",
               "TREASURY_HTTP_TIMEOUT_SECONDS": "10", "TREASURY_RECV_WINDOW_MS": "5000"}
    workers = cluster.start_ready("w1", "w2", **shipped)
    cluster.start_beat(**shipped)
    wrt = _runtime(cluster)
    run_id = _start(wrt, workflows_dir)
    cid = client_id_for(run_id, "first")
    wait_for(in_flight.is_set, 20, "the first transfer to reach the exchange", interval=0.01)
    with cluster.engine.connect() as conn:
        owner = conn.execute(select(execution_records.c.lease_owner)
                             .where(execution_records.c.client_id == cid)).scalar_one()
    pid = int(str(owner).split("#")[0].rsplit(":", 1)[1])
    (holder,) = [w for w in workers if pid in child_pids(w.proc.pid) or pid == w.proc.pid]
    holder.kill9()
    killed = time.monotonic()

    def first_done() -> bool:
        from treasury.store.tables import steps

        with cluster.engine.connect() as conn:
            state = conn.execute(select(steps.c.state).where(steps.c.run_id == run_id,
                                                             steps.c.step_id == "first")).scalar_one()
        return state == "SUCCEEDED"

    wait_for(first_done, 90, "the killed worker's step to be recovered", interval=0.2, detail=cluster.diagnostics)
    recovered = time.monotonic() - killed
    assert _finished(cluster, run_id, 60) == "SUCCEEDED"
    _assert_one_effect_per_step(sim, run_id)
    sent = [e for e in query_events(cluster.engine, run_id=run_id, type="request.sent") if e.step_id == "first"]
    assert len(sent) == 1  # found by its client id, never sent again
    print(f"\nkill -> step recovered in {recovered:.1f}s")
    assert recovered < 60, f"recovered {recovered:.1f}s after the kill"
