"""A url that names some other server than a tenant fails the run saying so, however
that server words its refusal: one that answers in tether's own error shape (the
orchestrator's own `tether serve`, given as the tenant's url by mistake) failed it
with that server's advice alone ("POST is not allowed at /"), as if the tenant had
refused the invocation for a reason of its own. Real loopback servers."""

from __future__ import annotations

import pytest

import tether
from tether.remote import RemoteRefusedError

from ..server._serve import Served
from ._http import serving
from ._procs import SECRET

_HINT = "is tether.remote.handler served at this url?"


@pytest.mark.parametrize("path", ["/", "/api/v1/runs"])
def test_a_url_of_tethers_own_server_says_it_is_no_tenant(
    app: tether.App, orchestrator: Served, path: str
) -> None:
    url = orchestrator.url + path
    flow = app.remote_workflow(f"astray{len(path)}", url=url, secret=SECRET, max_invocations=1)
    with pytest.raises(RemoteRefusedError) as refused:
        app.run(flow, workflow_id=f"astray-{len(path)}")
    assert refused.value.code not in ("http_error", "workflow_not_found")
    assert _HINT in str(refused.value)


def test_a_tenants_own_refusal_is_not_called_another_servers(app: tether.App) -> None:
    body = b'{"error": {"code": "workflow_not_found", "message": "no workflow here"}}'
    head = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: %d"
    with serving(head % len(body), body) as url:
        flow = app.remote_workflow("elsewhere", url=url, secret=SECRET, max_invocations=1)
        with pytest.raises(RemoteRefusedError) as refused:
            app.run(flow, workflow_id="elsewhere-1")
    assert refused.value.code == "workflow_not_found"
    assert _HINT not in str(refused.value)
    assert "@tenant.workflow" in str(refused.value)  # the fix for this refusal
