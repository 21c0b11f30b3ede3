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
