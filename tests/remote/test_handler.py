"""The tenant's endpoint answers a GET (a health check, a browser) as well as the
orchestrator's signed POSTs, on a real uvicorn server."""

from __future__ import annotations

from pathlib import Path

import httpx

from tether.remote import SUPPORTED_PROTOCOLS

from ._procs import Tenant, start_tenant


def test_a_get_of_the_tenant_says_what_is_served_there(tmp_path: Path) -> None:
    # a load balancer's health check (GET /) got 405 Method Not Allowed, as plain text:
    # a tenant behind one was never marked healthy
    tenant: Tenant = start_tenant(tmp_path)
    try:
        got = httpx.get(tenant.url, timeout=30)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["service"] == "tether.remote tenant"
        assert body["protocols"] == list(SUPPORTED_PROTOCOLS)
        assert "app.remote_workflow" in body["message"]
        assert httpx.head(tenant.url, timeout=30).status_code == 200
        # an unsigned POST is still refused, as before
        refused = httpx.post(tenant.url, content=b"{}", timeout=30)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "signature_missing"
    finally:
        tenant.stop()
