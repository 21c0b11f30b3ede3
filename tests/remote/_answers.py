"""What a tenant answers one signed invocation with, line by line."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tether.kernel import sign
from tether.remote import TenantApp, handler


def tenant_lines(
    tenant: TenantApp, secret: str, workflow: str, accepts: list[str]
) -> list[dict[str, Any]]:
    """The lines `tenant` answers a first invocation of `workflow` with, to an
    orchestrator that accepts `accepts`."""
    payload = {
        "protocol": 1, "run_id": "r", "workflow": workflow, "invocation": 1,
        "journal": {}, "deadline": time.time() + 30, "accepts": accepts,
    }  # fmt: skip
    body = json.dumps(payload).encode()
    ts = str(int(time.time()))
    headers = {"X-Tether-Timestamp": ts, "X-Tether-Signature": sign(secret, ts, body)}

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=handler(tenant))
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.post("http://tenant/", content=body, headers=headers)

    return [json.loads(line) for line in asyncio.run(go()).content.splitlines()]


class CutAfterFirst(httpx.AsyncBaseTransport):
    """The tenant's real answer; the first one cut off right after the first line that
    holds `marker` (the connection dropped there), the later ones whole."""

    def __init__(self, inner: httpx.AsyncBaseTransport, marker: bytes) -> None:
        self.inner = inner
        self.marker = marker
        self.cuts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        lines = (await resp.aread()).splitlines(keepends=True)
        if self.cuts == 0:
            first = next(i for i, line in enumerate(lines) if self.marker in line)
            lines = lines[: first + 1]
            self.cuts += 1
        return httpx.Response(resp.status_code, headers=resp.headers, content=b"".join(lines))

    async def aclose(self) -> None:
        """Closed with the orchestrator's client: a real transport's open connections too."""
        await self.inner.aclose()
