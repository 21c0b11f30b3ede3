"""A tenant behind a proxy that asks for credentials, given in the url
(``http://user:password@host/``: httpx sends them as Basic auth). The password went
into the run's record for anyone who reads runs: the marker step's result (`tether
runs show`, the HTTP API, the dashboard), the run's error and its events."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from tether.remote import RemoteInvocationLimitError

from ._http import serving
from ._procs import SECRET, start_tenant

PASSWORD = "hunter2-s3cret"


def _texts(app: tether.App, wid: str) -> str:
    """All a reader of run `wid` is shown, as one text."""
    rec = app.get_record(wid)
    shown = [str(rec.last_error), *(str(s.result) for s in rec.steps.values())]
    shown += [f"{e.message} {e.detail}" for e in rec.events]
    return "\n".join(shown)


def test_a_password_in_the_url_is_sent_and_not_recorded(tmp_path: Path) -> None:
    tenant = start_tenant(tmp_path)
    try:
        with tether.App(f"sqlite:///{tmp_path}/orch.db") as app:
            url = tenant.url.replace("http://", f"http://proxy-user:{PASSWORD}@")
            double = app.remote_workflow("double", url=url, secret=SECRET, version="1")
            done = app.run(double, 21, workflow_id="cred-1")
            assert done.value == 42
            recorded = done.record.steps["remote.tenant"].result
            assert recorded == tenant.url.replace("http://", "http://***@")
            assert PASSWORD not in _texts(app, "cred-1")
    finally:
        tenant.stop()


def test_a_password_in_the_url_is_not_in_the_runs_error(
    app: tether.App, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(b"HTTP/1.1 503 Service Unavailable", b"down for a moment") as url:
        flow = app.remote_workflow(
            "behind-proxy",
            url=url.replace("http://", f"http://proxy-user:{PASSWORD}@"),
            secret=SECRET,
            max_invocations=2,
            retry_delay=0.01,
        )
        with pytest.raises(RemoteInvocationLimitError) as raised:
            app.run(flow, workflow_id="cred-2")
    assert "answered 503: down for a moment" in str(raised.value)
    assert "http://***@127.0.0.1:" in str(raised.value)
    assert PASSWORD not in str(raised.value)
    assert PASSWORD not in _texts(app, "cred-2")
    assert PASSWORD not in caplog.text
