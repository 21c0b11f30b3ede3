"""A refusal that the orchestrator's own registration causes (a wrong secret, a
workflow or version the tenant does not serve) fails the run saying how to mend the
registration: it said only what the tenant refused. Against a real uvicorn tenant."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import tether
from tether.remote import RemoteRefusedError, RemoteVersionError

from ._http import serve, serving
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
    # the versions served were named twice: "served at versions '1', not '9'; it serves
    # versions '1': ..."
    assert str(refused).endswith(
        "workflow 'double' is served at versions '1', not '9'; register the workflow here "
        "at a version the tenant serves (app.remote_workflow(..., version=)), or have the "
        "tenant serve '9' too (@tenant.workflow(compatible=['9']))"
    )


def test_versions_a_tenant_does_not_name_are_named_by_the_advice(app: tether.App) -> None:
    # a tenant of another make whose message does not list them
    error = {"code": "workflow_version_mismatch", "message": "wrong version",
             "details": {"versions": ["2"]}}  # fmt: skip
    head = b"HTTP/1.1 409 Conflict\r\ncontent-type: application/json"
    with serving(head, json.dumps({"error": error}).encode()) as url:
        flow = app.remote_workflow("other", url=url, secret=SECRET, version="1")
        with pytest.raises(RemoteVersionError) as raised:
            app.run(flow)
    assert "wrong version; it serves versions '2'; register the workflow here" in str(raised.value)


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


def _mismatch(app: tether.App, wid: str, supported: list[object]) -> str:
    """The message run `wid` failed with, as recorded, when a real server answers as a
    tether tenant of another release does to a protocol it does not speak."""
    error = {"code": "protocol_version_mismatch", "message": "protocol version 1 is not "
             "spoken here", "details": {"supported": supported}}  # fmt: skip
    head = b"HTTP/1.1 426 Upgrade Required\r\ncontent-type: application/json"
    with serving(head, json.dumps({"error": error}).encode()) as url:
        flow = app.remote_workflow(wid, url=url, secret=SECRET)
        with pytest.raises(RemoteVersionError):
            app.run(flow, workflow_id=wid)
    recorded = app.get_record(wid).last_error
    assert recorded is not None and recorded.type == "RemoteVersionError"
    return recorded.message


def test_a_protocol_the_tenant_does_not_speak_names_those_it_does(app: tether.App) -> None:
    # the recorded error (tether runs show, the dashboard) said only "protocol version 1
    # is not spoken here": the versions spoken were on the exception object alone
    assert _mismatch(app, "newer", [2, 3]).endswith(
        "is not spoken here; the tenant speaks protocol versions 2, 3 and this orchestrator "
        "1: upgrade tether here to a release that speaks one of them"
    )
    assert _mismatch(app, "older", [0]).endswith(
        "the tenant speaks protocol versions 0 and this orchestrator 1: upgrade tether on "
        "the tenant to a release that speaks 1"
    )
    assert _mismatch(app, "odd", ["two"]).endswith(
        "is not spoken here; the tenant speaks protocol versions 'two' and this orchestrator "
        "1: run releases of tether on both sides that share a protocol version"
    )
