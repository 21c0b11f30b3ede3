"""Remote workflows between real processes: a tenant behind uvicorn, an orchestrator
behind `tether serve`, each on a loopback port."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether import App, Client, RunRecord, RunStatus
from tether.kernel import sign
from tether.remote import RemoteWorkflowError
from tether.testing import eventually_sync

from ..server._serve import Served, tether
from ._procs import SECRET, Tenant, start_tenant


def _ended(client: Client, wid: str) -> RunRecord:
    def ended() -> RunRecord:
        rec = client.get_record(wid)
        assert rec.status.terminal, rec.status
        return rec

    return eventually_sync(ended, timeout=60)


def _invocations(rec: RunRecord) -> int:
    return sum(1 for e in rec.events if e.type == "remote.invoked")


def test_steps_a_signal_and_a_child_run_to_completion(orchestrator: Served, tenant: Tenant) -> None:
    with Client(orchestrator.url) as client:
        wid = client.start("send-reminder", "ada", workflow_id="r-1", tenant="acme")

        def parked() -> bool:
            return client.get_record(wid).status is RunStatus.WAITING

        eventually_sync(parked, timeout=30)
        assert client.signal(wid, "approve", {"by": "bob"}) is True
        rec = _ended(client, wid)
    assert rec.status is RunStatus.COMPLETED, rec.last_error
    assert rec.output == {"sent": "sent to ADA", "approved": {"by": "bob"}, "doubled": 42}
    assert list(rec.steps) == ["remote.tenant", "lookup", "send"]
    assert rec.steps["lookup"].result == "ADA"
    assert tenant.side(wid) == ["lookup", "send"]  # each step ran once, though replayed 3 times
    assert _invocations(rec) == 3  # to the signal, to the child, to the end
    shown = tether(orchestrator.folder, orchestrator.db, "runs", "show", wid)
    assert shown.returncode == 0, shown.stderr
    assert "lookup" in shown.stdout and "send" in shown.stdout
    child = tether(orchestrator.folder, orchestrator.db, "runs", "show", "r-1/double#1")
    assert child.returncode == 0 and "completed" in child.stdout, child.stdout + child.stderr


def test_a_tenant_killed_mid_invocation_repeats_only_the_step_in_flight(
    own_pair: tuple[Served, Tenant],
) -> None:
    orchestrator, tenant = own_pair
    tenant.hold.touch()
    with Client(orchestrator.url) as client:
        wid = client.start("crashy", workflow_id="c-1")

        def first_recorded_second_running() -> bool:
            return "first" in client.get_record(wid).steps and "second started" in tenant.side(wid)

        eventually_sync(first_recorded_second_running, timeout=30)
        tenant.kill()  # SIGKILL, inside step "second"
        tenant.hold.unlink()
        restarted = start_tenant(tenant.folder, tenant.port)
        try:
            rec = _ended(client, wid)
        finally:
            restarted.stop()
    assert rec.status is RunStatus.COMPLETED, rec.last_error
    assert rec.output == "done"
    assert restarted.side(wid) == ["first", "second started", "second started", "second done"]
    assert any(e.type == "remote.unanswered" for e in rec.events)


def test_a_workflow_version_the_tenant_does_not_serve_fails_the_run(
    orchestrator: Served, tenant: Tenant
) -> None:
    with Client(orchestrator.url) as client:
        wid = client.start("versioned")
        rec = _ended(client, wid)
    assert rec.status is RunStatus.FAILED
    assert rec.last_error is not None
    assert rec.last_error.type == "RemoteVersionError"
    assert "served at versions '2', '1', not '3'" in rec.last_error.message
    assert _invocations(rec) == 1


def test_a_slow_tenant_is_stopped_at_its_deadline_on_both_sides(
    orchestrator: Served, tenant: Tenant
) -> None:
    with Client(orchestrator.url) as client:
        wid = client.start("slow")
        rec = _ended(client, wid)
    assert rec.status is RunStatus.FAILED
    assert rec.last_error is not None and rec.last_error.type == "RemoteInvocationLimitError"
    assert "deadline" in rec.last_error.message
    assert _invocations(rec) == 2
    # the tenant cancelled the step at the deadline each time: it never finished
    assert tenant.side(wid) == ["nap started", "nap started"]


def test_invocations_are_capped(orchestrator: Served) -> None:
    with Client(orchestrator.url) as client:
        wid = client.start("unreachable")
        rec = _ended(client, wid)
    assert rec.status is RunStatus.FAILED
    assert rec.last_error is not None and rec.last_error.type == "RemoteInvocationLimitError"
    assert "cap of 3 invocations" in rec.last_error.message
    assert _invocations(rec) == 3


def _invocation(deadline: float) -> bytes:
    return (
        '{"protocol": 1, "run_id": "x-1", "workflow": "double", "version": "1", '
        f'"invocation": 1, "input": "4", "journal": {{}}, "deadline": {deadline}}}'
    ).encode()


def _post(tenant: Tenant, body: bytes, ts: str, signature: str) -> httpx.Response:
    headers = {"X-Tether-Timestamp": ts, "X-Tether-Signature": signature}
    return httpx.post(tenant.url, content=body, headers=headers, timeout=60)


def test_the_tenant_refuses_replayed_tampered_and_stale_requests(tenant: Tenant) -> None:
    body = _invocation(time.time() + 30)
    ts = str(int(time.time()))
    good = _post(tenant, body, ts, sign(SECRET, ts, body))
    assert good.status_code == 200
    last = good.text.strip().splitlines()[-1]
    assert '"status":"completed"' in last and '"output":"8"' in last
    replayed = _post(tenant, body, ts, sign(SECRET, ts, body))
    assert (replayed.status_code, replayed.json()["error"]["code"]) == (401, "replayed")
    tampered = _post(tenant, body.replace(b'"4"', b'"5"'), ts, sign(SECRET, ts, body))
    assert (tampered.status_code, tampered.json()["error"]["code"]) == (401, "bad_signature")
    old = str(int(time.time()) - 3600)
    stale = _post(tenant, body, old, sign(SECRET, old, body))
    assert (stale.status_code, stale.json()["error"]["code"]) == (401, "stale_timestamp")
    assert tenant.side("x-1") == []


def test_a_cancel_with_compensation_undoes_the_steps_on_the_tenant(
    orchestrator: Served, tenant: Tenant
) -> None:
    with Client(orchestrator.url) as client:
        wid = client.start("booking", workflow_id="b-1")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
        client.cancel(wid, "customer left", compensate=True)

        def compensated() -> RunRecord:
            rec = client.get_record(wid)
            assert rec.status is RunStatus.COMPENSATED, rec.status
            return rec

        rec = eventually_sync(compensated, timeout=60)
    # the tenant replayed its body to learn the compensation and ran it, once
    assert tenant.side(wid) == ["reserve", "release seat-7"]
    assert "compensate:remote.tenant" in rec.steps


def test_a_graceful_stop_records_the_step_the_tenant_finished_meanwhile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the orchestrator closes while the tenant is inside step "second": the tenant
    # finishes it within the grace period and streams it back; the draining process
    # refused to record it (start no new step), so the next drive ran it again
    tenant = start_tenant(tmp_path)
    db = f"sqlite:///{tmp_path}/orch.db"

    def orchestrator() -> tuple[App, Any]:
        app = App(db)
        return app, app.remote_workflow("crashy", url=tenant.url, secret=SECRET, version="1")

    try:
        tenant.hold.touch()
        app, crashy = orchestrator()
        app.start(crashy, workflow_id="g-1")
        eventually_sync(lambda: "second started" in tenant.side("g-1"), timeout=30)
        with caplog.at_level(logging.INFO, logger="tether"):
            closing = threading.Thread(target=app.close)
            closing.start()
            eventually_sync(lambda: "hand themselves back" in caplog.text, timeout=30)
            tenant.hold.unlink()  # the step ends while the process drains
            closing.join(timeout=60)
        again, crashy = orchestrator()
        with again:
            done = again.run(crashy, workflow_id="g-1")
        assert done.status is RunStatus.COMPLETED and done.value == "done"
        assert tenant.side("g-1") == ["first", "second started", "second done"]
    finally:
        tenant.stop()


def test_retry_attempts_are_counted_across_invocations(tenant: Tenant, tmp_path: Path) -> None:
    # attempts were counted per invocation: with a back-off longer than the deadline
    # every invocation made "attempt 1", until the cap of invocations
    with App(f"sqlite:///{tmp_path}/orch.db") as app:
        flaky = app.remote_workflow("flaky", url=tenant.url, secret=SECRET, version="1",
                                    deadline=1.0, retry_delay=0.05, max_invocations=6)  # fmt: skip
        with pytest.raises(RemoteWorkflowError, match="ConnectionError: down"):
            app.run(flaky, workflow_id="fl-1")
        rec = app.get_record("fl-1")
    assert tenant.side("fl-1") == ["attempt 1", "attempt 2", "attempt 3"]
    assert _invocations(rec) == 3  # each cut at its deadline by the back-off, but the last
    step = rec.steps["call"]
    assert step.status.value == "failed" and step.attempts == 3


def test_a_step_that_kills_its_tenant_stops_after_the_interrupted_reruns(tmp_path: Path) -> None:
    # the step ran once per invocation, up to the cap of invocations: its attempts were
    # not durable, so the interrupted-rerun limit never held
    tenant = start_tenant(tmp_path, workers=2)  # a worker killed is restarted
    try:
        with App(f"sqlite:///{tmp_path}/orch.db") as app:
            flow = app.remote_workflow("suicide", url=tenant.url, secret=SECRET, version="1",
                                       retry_delay=0.05, max_invocations=10)  # fmt: skip
            with pytest.raises(RemoteWorkflowError, match="StepFailedError"):
                app.run(flow, workflow_id="die-1")
            rec = app.get_record("die-1")
    finally:
        tenant.stop()
    # 1 attempt + RetryPolicy.interrupted_reruns (3), each killed by SIGKILL
    assert tenant.side("die-1") == ["start"] * 4
    assert _invocations(rec) == 5
    assert rec.steps["die"].attempts == 4
