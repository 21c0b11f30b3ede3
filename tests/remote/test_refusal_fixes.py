"""A refusal that the orchestrator's own registration causes (a wrong secret, a
workflow or version the tenant does not serve) fails the run saying how to mend the
registration: it said only what the tenant refused. Against a real uvicorn tenant."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import tether
from tether.remote import RemoteRefusedError, RemoteVersionError

from ._http import serve
from ._procs import SECRET, Tenant, start_tenant


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    tenant = start_tenant(tmp_path_factory.mktemp("refusals"))
    yield tenant
    tenant.stop()


def _refused(app: tether.App, far: Tenant, name: str, **spec: str) -> RemoteRefusedError:
    flow = app.remote_workflow(name, url=far.url, **({"secret": SECRET} | spec))
    with pytest.raises(RemoteRefusedError) as raised:
        app.run(flow, 2)
    return raised.value


def test_a_wrong_secret_names_the_secret_to_give(app: tether.App, far: Tenant) -> None:
    refused = _refused(app, far, "double", secret="not-the-tenants", version="1")
    assert refused.code == "bad_signature"
    assert str(refused).endswith(
        "the signature does not match the body; the secret= given to app.remote_workflow "
        "is not one the tenant accepts: give it the tenant's TenantApp(secret=...)"
    )


def test_a_workflow_the_tenant_lacks_names_those_it_serves(app: tether.App, far: Tenant) -> None:
    refused = _refused(app, far, "triple", version="1")
    assert refused.code == "workflow_not_found"
    assert "no workflow 'triple' here; the tenant serves 'booking', 'crashy', " in str(refused)
    assert "register 'triple' there with @tenant.workflow, or name one it serves" in str(refused)


def test_a_version_the_tenant_lacks_names_those_it_serves(app: tether.App, far: Tenant) -> None:
    refused = _refused(app, far, "double", version="9")
    assert isinstance(refused, RemoteVersionError) and refused.supported == ["1"]
    assert str(refused).endswith(
        "; it serves versions '1': register the workflow here with one of them "
        "(app.remote_workflow(..., version=)), or have the tenant serve '9' "
        "(@tenant.workflow(compatible=[...]))"
    )


def test_a_stale_timestamp_names_the_clocks(app: tether.App) -> None:
    # a tenant whose clock is far off refuses every signature as stale
    error = json.dumps(
        {"error": {"code": "stale_timestamp", "message": "300s from the server's clock"}}
    ).encode()
    server, url, _ = serve(b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json", error)
    try:
        flow = app.remote_workflow("skewed", url=url, secret=SECRET)
        with pytest.raises(RemoteRefusedError) as raised:
            app.run(flow)
    finally:
        server.shutdown()
        server.server_close()
    assert str(raised.value).endswith(
        "from the server's clock; this machine's clock and the tenant's differ: "
        "synchronise them (NTP)"
    )
