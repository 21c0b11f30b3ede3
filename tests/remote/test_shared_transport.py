"""A transport given to ``app.remote_workflow`` is shared by every run of the
registration, and each invocation's client closed it on leaving: the pool's
connections with it, those of other runs' invocations in flight included. So one
run ending cut another mid-step, which was invoked again and ran that step twice.

The tenant is a real uvicorn process; the orchestrator an App in this process on each
database, reaching it over loopback TCP through one `httpx.AsyncHTTPTransport`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

import tether
from tether.testing import eventually_sync

from ._procs import SECRET, Tenant, start_tenant


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    tenant = start_tenant(tmp_path_factory.mktemp("shared"))
    yield tenant
    tenant.stop()


def test_a_run_ending_does_not_cut_another_runs_invocation(app: tether.App, far: Tenant) -> None:
    shared = httpx.AsyncHTTPTransport()
    options = {"url": far.url, "secret": SECRET, "version": "1", "transport": shared}
    crashy = app.remote_workflow("crashy", retry_delay=0.01, **options)
    double = app.remote_workflow("double", **options)
    wid = f"held-{uuid.uuid4().hex[:8]}"
    far.hold.touch()  # crashy's step "second" runs until the hold is gone
    try:
        app.start(crashy, workflow_id=wid)
        eventually_sync(lambda: "second started" in far.side(wid), timeout=30)
        # another run through the same transport, to its end, while "second" runs
        assert app.run(double, 4, workflow_id=f"{wid}-double").value == 8
    finally:
        far.hold.unlink()
    rec = app.result(wid, timeout=60)
    assert rec.value == "done"
    invoked = [e for e in rec.record.events if e.type == "remote.invoked"]
    assert len(invoked) == 1, [(e.type, e.message) for e in rec.record.events]
    assert far.side(wid) == ["first", "second started", "second done"]  # each ran once
