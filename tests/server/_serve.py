"""A real `tether serve` in a process of its own, on a free loopback port."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tether.testing import eventually_sync

from .._loopback import loopback

TETHER = str(Path(sys.executable).with_name("tether"))

FLOWS = textwrap.dedent(
    """
    import os
    import time

    from pydantic import BaseModel

    import tether

    class Who(BaseModel):
        name: str

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow
    async def greet(wf: tether.Workflow, who: Who) -> str:
        await wf.step("hello", lambda: "hello")
        return "hi " + who.name

    @app.workflow
    async def waits(wf: tether.Workflow) -> object:
        await wf.step("before", lambda: 1)
        got = await wf.wait_for_signal("go")
        await wf.step("after", lambda: 2)
        return got

    @app.workflow
    async def undoes(wf: tether.Workflow) -> object:
        # the undo takes a while: the run is `cancelled` meanwhile, its undo still due
        await wf.step("reserve", lambda: "R", compensate=lambda r: time.sleep(0.5))
        return await wf.wait_for_signal("go")

    @app.workflow
    async def hooked(wf: tether.Workflow) -> object:
        return await wf.wait_for_event("github")

    @app.workflow
    async def tokened(wf: tether.Workflow) -> object:
        token = await wf.create_token()
        return await wf.wait_for_token(token)

    @app.workflow
    async def awaits(wf: tether.Workflow, token: str) -> object:
        return await wf.wait_for_token(token)  # the caller's own token id

    @app.workflow
    async def counts(wf: tether.Workflow, n: int) -> int:
        for i in range(n):
            await wf.step("tick", lambda: i)
        return n

    @app.workflow
    async def refunds(wf: tether.Workflow, fixed: str) -> None:
        # its undo fails until the file `fixed` exists (the refund service is back)
        def refund(charge: str) -> None:
            if not os.path.exists(fixed):
                raise ConnectionError("refund service unavailable")

        await wf.step("charge", lambda: "c1", compensate=refund)
        raise RuntimeError("declined")

    @app.workflow
    async def broken(wf: tether.Workflow) -> None:
        await wf.step("ok", lambda: 1)
        raise RuntimeError("the agent gave up")

    app.queue("slow", concurrency=2)
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    url: str
    db: str
    proc: subprocess.Popen[str]
    folder: Path

    @property
    def log(self) -> str:
        """What the server wrote (stdout and stderr), so far."""
        return (self.folder / "serve.log").read_text()

    def stop(self) -> str:
        """SIGTERM, wait, and the server's output."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log


def environment(folder: Path, db: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TETHER_DATABASE_URL", "TETHER_TOKEN")}
    return env | {"FLOWS_DB": db, "COLUMNS": "200"} | (extra or {})


def tether(
    folder: Path, db: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TETHER, "--db", db, *args],
        cwd=folder,
        env=environment(folder, db, env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start(
    folder: Path,
    db: str,
    *args: str,
    env: dict[str, str] | None = None,
    wait: bool = True,
    flows: str | None = FLOWS,
) -> Served:
    """`tether serve` of `flows` (its ``app``), or with ``flows=None`` of the database
    alone (no --app)."""
    if flows is not None:
        (folder / "flows.py").write_text(flows)
    app_args = [] if flows is None else ["--app", "flows.py:app"]
    port = free_port()
    # to a file, not a pipe: a pipe nobody reads fills up with the access log, and then
    # the server blocks on its next log line
    with (folder / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [TETHER, "--db", db, "serve", *app_args, "--port", str(port), *args],
            cwd=folder,
            env=environment(folder, db, env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    served = Served(f"http://127.0.0.1:{port}", db, proc, folder)
    if wait:

        def up() -> bool:
            assert proc.poll() is None, f"tether serve exited: {served.stop()}"
            try:
                return httpx.get(served.url + "/api/v1/openapi.json", timeout=10).status_code == 200
            except httpx.TransportError:
                return False

        try:
            eventually_sync(up, timeout=60, interval=0.05)
        except AssertionError as exc:  # stopped, not left running into the next test
            raise AssertionError(f"{exc}; its output:\n{served.stop()[-4000:]}") from None
    return served


def answering(
    kind: str, body: bytes, status: int = 200
) -> type[http.server.BaseHTTPRequestHandler]:
    """Another program on a port (not tether): `status` and its own answer to every
    request."""

    class Other(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Other


@contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """The URL of a real HTTP server on a free loopback port answering with `handler`."""
    with loopback(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield url
