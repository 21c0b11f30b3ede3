"""An invocation delivered to the tenant twice on the way (a proxy in front of it
retrying the request after its first try's answer was lost) is refused there the
second time as replayed, and that refusal is the one the orchestrator reads. It
failed the run for good, though the orchestrator never sends one signature twice:
a new invocation is answered. A real tenant (uvicorn) behind a real proxy on loopback;
the orchestrator an App in this process on each database."""

from __future__ import annotations

import socketserver
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest

import tether

from ._procs import SECRET, Tenant, start_tenant


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _retrying_proxy(upstream: str) -> tuple[_Server, str]:
    """A proxy that sends the first request it is given upstream twice (the answer to
    the first try lost) and answers with the second try's; the others once."""
    first = threading.Lock()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()  # the request line: a POST of /
            headers, length = {}, 0
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() not in ("host", "content-length", "connection"):
                    headers[name] = value.strip()
                if name.lower() == "content-length":
                    length = int(value)
            body = self.rfile.read(length)
            tries = 2 if first.acquire(blocking=False) else 1
            for _ in range(tries):
                resp = httpx.post(upstream, content=body, headers=headers, timeout=60)
            kind = resp.headers.get("content-type", "application/json")
            self.wfile.write(
                f"HTTP/1.1 {resp.status_code} X\r\ncontent-type: {kind}\r\n"
                f"content-length: {len(resp.content)}\r\nconnection: close\r\n\r\n".encode()
                + resp.content
            )

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def far(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenant]:
    tenant = start_tenant(tmp_path_factory.mktemp("duplicated"))
    yield tenant
    tenant.stop()


def test_an_invocation_delivered_twice_is_invoked_again(app: tether.App, far: Tenant) -> None:
    proxy, url = _retrying_proxy(far.url)
    try:
        flow = app.remote_workflow("double", url=url, secret=SECRET, version="1",
                                   retry_delay=0.01)  # fmt: skip
        done = app.run(flow, 4, workflow_id=f"twice-{uuid.uuid4().hex[:8]}")
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert done.value == 8
    unanswered = [e.message or "" for e in done.record.events if e.type == "remote.unanswered"]
    assert len(unanswered) == 1 and "401 replayed" in unanswered[0], unanswered
    assert "proxy" in unanswered[0]  # says where a copy comes from
