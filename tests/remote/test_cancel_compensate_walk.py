"""`cancel(compensate=True)` of a remote run while its drive runs (the tenant executing
a step, or the run completing) asks the tenant to compensate, as it does for a parked
run: it ended `cancelled`, the seat the tenant reserved never released. A failed run
still ends as the tenant left it. A real tenant (uvicorn on loopback, in a thread, its
side effects in a ledger); the orchestrator an App in this process on each database."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import uvicorn

import tether
from tether import RunStatus
from tether.remote import RemoteWorkflowError, TenantApp, handler
from tether.testing import eventually_sync

SECRET = "walk-secret"


@contextlib.contextmanager
def _served(tenant: TenantApp) -> Iterator[str]:
    """`tenant`'s handler served by uvicorn on a loopback port, for the block."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(handler(tenant), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        eventually_sync(lambda: server.started, timeout=30)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class _Seats:
    """A tenant whose "seats" workflow reserves a seat (released by its undo), then
    pays: held at `release` once `entered` is set, or failing if `declined`. Without
    `undo`, the reservation has no compensation."""

    def __init__(self, *, declined: bool = False, undo: bool = True) -> None:
        self.ledger: list[str] = []
        self.entered, self.release = threading.Event(), threading.Event()
        self.tenant = TenantApp(secret=SECRET)
        self.declined, self.undo = declined, undo
        self.tenant.workflow(name="seats", version="1")(self._seats)

    async def _seats(self, wf: tether.Workflow) -> str:
        def reserve() -> str:
            self.ledger.append("reserve")
            return "seat-7"

        def give_back(seat: str) -> None:
            self.ledger.append(f"release {seat}")

        def pay() -> str:
            self.entered.set()
            assert self.release.wait(30)
            self.ledger.append("pay")
            if self.declined:
                raise ValueError("card declined")
            return "paid"

        await wf.step("reserve", reserve, compensate=give_back if self.undo else None)
        return str(await wf.step("pay", pay))


def _flow(app: tether.App, url: str) -> Any:
    return app.remote_workflow("seats", url=url, secret=SECRET, version="1", retry_delay=0.01)


def _completed(app: tether.App, wid: str, key: str) -> bool:
    step = app.get_record(wid).steps.get(key)
    return step is not None and step.status is tether.StepStatus.COMPLETED


def test_a_cancel_with_compensation_mid_invocation_has_the_tenant_compensate(
    app: tether.App,
) -> None:
    seats = _Seats()
    with _served(seats.tenant) as url, ThreadPoolExecutor(1) as pool:
        flow = _flow(app, url)
        drive = pool.submit(app.run, flow, workflow_id="mid-1")
        assert seats.entered.wait(30)  # the tenant is inside "pay"
        # and "reserve" recorded here (a step whose line comes after the cancel is
        # discarded, as any step finishing after a cancel is: nothing knows to undo it)
        try:
            eventually_sync(lambda: _completed(app, "mid-1", "reserve"), timeout=30)
            app.cancel("mid-1", "customer left", compensate=True)
        finally:
            seats.release.set()
        drive.result(timeout=60)
        rec = app.get_record("mid-1")
    assert rec.status is RunStatus.COMPENSATED
    assert rec.end_reason is tether.EndReason.CANCELLED
    # the tenant undid its completed step, exactly once ("pay" finished after the
    # cancel: its result was discarded, as for any step)
    assert seats.ledger == ["reserve", "pay", "release seat-7"]
    assert rec.steps["compensate:remote.tenant"].status is tether.StepStatus.COMPLETED


def test_a_cancel_with_compensation_landing_as_the_run_completes_is_compensated(
    app: tether.App, database_url: str
) -> None:
    # the cancel lands once the tenant's last step is recorded, before the run's
    # completion: the run ends cancelled, and the tenant is asked to undo its steps
    seats = _Seats()
    seats.release.set()
    elsewhere = tether.App(database_url, inline_wait=0)  # another process's cancel
    cancelled: list[str] = []

    def on_event(wid: str, type_: str, message: str | None, detail: Any) -> None:
        if type_ == "step.completed" and message == "pay" and not cancelled:
            # from a thread of its own: the sync facade is refused on a running loop
            with ThreadPoolExecutor(1) as pool:
                cancelled.extend(pool.submit(elsewhere.cancel, wid, compensate=True).result())

    try:
        with _served(seats.tenant) as url:
            result = app.run(_flow(app, url), workflow_id="end-1", on_event=on_event)
    finally:
        elsewhere.close()
    assert cancelled == ["end-1"]
    assert result.status is RunStatus.COMPENSATED
    assert app.get_record("end-1").end_reason is tether.EndReason.CANCELLED
    assert seats.ledger == ["reserve", "pay", "release seat-7"]


@pytest.mark.parametrize("undo", [True, False])
def test_a_failed_remote_run_ends_as_the_tenant_left_it(app: tether.App, undo: bool) -> None:
    # the tenant compensates a failed run before it answers; the orchestrator must
    # not ask it again, nor call a run compensated that had nothing undone
    seats = _Seats(declined=True, undo=undo)
    seats.release.set()
    with _served(seats.tenant) as url, pytest.raises(RemoteWorkflowError):
        app.run(_flow(app, url), workflow_id="fail-1")
    rec = app.get_record("fail-1")
    assert rec.end_reason is tether.EndReason.FAILED
    assert "compensate:remote.tenant" not in rec.steps
    if undo:
        assert rec.status is RunStatus.COMPENSATED
        assert seats.ledger == ["reserve", "pay", "release seat-7"]
    else:
        assert rec.status is RunStatus.FAILED
        assert seats.ledger == ["reserve", "pay"]
