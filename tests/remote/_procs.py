"""A tenant (uvicorn serving `tether.remote.handler`) and an orchestrator (`tether
serve`), each a real process of its own on a loopback port."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import httpx

from tether.testing import eventually_sync

from ..server._serve import TETHER, Served, environment, free_port

SECRET = "tenant-secret"

TENANT = textwrap.dedent(
    """
    import asyncio
    import os
    import signal
    from pathlib import Path

    import tether
    from tether.remote import TenantApp, handler

    SIDE = Path(os.environ["SIDE_FILE"])
    HOLD = Path(os.environ["HOLD_FILE"])
    tenant = TenantApp(secret=os.environ["REMOTE_SECRET"])


    def note(wf: tether.Workflow, text: str) -> None:
        with SIDE.open("a") as f:
            f.write(f"{wf.workflow_id} {text}\\n")


    @tenant.workflow(version="1")
    async def double(wf: tether.Workflow, n: int) -> int:
        return await wf.step("double", lambda: n * 2)


    @tenant.workflow(name="send-reminder", version="1")
    async def send_reminder(wf: tether.Workflow, who: str) -> dict:
        def lookup() -> str:
            note(wf, "lookup")
            return who.upper()

        name = await wf.step("lookup", lookup)
        approved = await wf.wait_for_signal("approve")
        doubled = await wf.child(double, 21)

        def send() -> str:
            note(wf, "send")
            return f"sent to {name}"

        sent = await wf.step("send", send)
        return {"sent": sent, "approved": approved, "doubled": doubled}


    @tenant.workflow(version="1")
    async def crashy(wf: tether.Workflow) -> str:
        def first() -> int:
            note(wf, "first")
            return 1

        await wf.step("first", first)

        async def second() -> int:
            note(wf, "second started")
            while HOLD.exists():  # the test kills the tenant here
                await asyncio.sleep(0.02)
            note(wf, "second done")
            return 2

        await wf.step("second", second)
        return "done"


    @tenant.workflow(version="1")
    async def slow(wf: tether.Workflow) -> str:
        async def nap() -> int:
            note(wf, "nap started")
            await asyncio.sleep(120)
            note(wf, "nap done")
            return 0

        await wf.step("nap", nap)
        return "rested"


    @tenant.workflow(version="1")
    async def stalls(wf: tether.Workflow) -> str:
        await wf.step("first", lambda: note(wf, "first"))

        async def stall() -> None:
            note(wf, "stall started")
            await asyncio.sleep(120)  # past any deadline: cancelled there

        await wf.step("stall", stall)
        return "never"


    @tenant.workflow(version="2", compatible=["1"])
    async def versioned(wf: tether.Workflow) -> str:
        return "v2"


    @tenant.workflow(version="1")
    async def booking(wf: tether.Workflow) -> object:
        def reserve() -> str:
            note(wf, "reserve")
            return "seat-7"

        def release(seat: str) -> None:
            note(wf, f"release {seat}")

        await wf.step("reserve", reserve, compensate=release)
        return await wf.wait_for_signal("pay")


    @tenant.workflow(version="1")
    async def flaky(wf: tether.Workflow) -> str:
        def call(ctx: tether.StepContext) -> str:
            note(wf, f"attempt {ctx.attempt}")
            raise ConnectionError("down")

        # the back-off outlasts the invocation's deadline: each attempt in an invocation
        return await wf.step("call", call, retry=tether.RetryPolicy(attempts=3, backoff=3600))


    @tenant.workflow(version="1")
    async def suicide(wf: tether.Workflow) -> str:
        def die() -> str:
            note(wf, "start")
            os.kill(os.getpid(), signal.SIGKILL)
            return "never"

        return await wf.step("die", die)


    @tenant.workflow(version="1")
    async def hoard(wf: tether.Workflow, size: int) -> int:
        await wf.step("small", lambda: note(wf, "small"))

        def big() -> str:
            note(wf, "big")
            return "x" * size

        blob = await wf.step("big", big)
        await wf.wait_for_signal("go")
        return len(blob)


    @tenant.workflow(version="1")
    async def ladder(wf: tether.Workflow, plan: dict) -> int:
        # plan["steps"] steps, and after every plan["every"] of them a signal "next"
        total = 0
        for i in range(plan["steps"]):
            total += await wf.step(f"rung{i}", lambda i=i: note(wf, f"rung{i}") or i)
            if (i + 1) % plan["every"] == 0:
                total += await wf.wait_for_signal("next")
        return total


    app = handler(tenant)
    """
)

ORCHESTRATOR = textwrap.dedent(
    """
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])
    url, secret = os.environ["TENANT_URL"], os.environ["REMOTE_SECRET"]
    app.remote_workflow("send-reminder", url=url, secret=secret, version="1",
                        project="billing", organisation="acme")
    app.remote_workflow("double", url=url, secret=secret, version="1")
    app.remote_workflow("crashy", url=url, secret=secret, version="1", retry_delay=0.05)
    app.remote_workflow("slow", url=url, secret=secret, version="1", deadline=1.5,
                        max_invocations=2, retry_delay=0.05)
    app.remote_workflow("versioned", url=url, secret=secret, version="3")
    app.remote_workflow("booking", url=url, secret=secret, version="1")
    app.remote_workflow("unreachable", url=os.environ["NOBODY_URL"], secret=secret,
                        max_invocations=3, retry_delay=0.05)
    """
)


@dataclass
class Tenant:
    url: str
    port: int
    folder: Path
    proc: subprocess.Popen[str]

    def side(self, workflow_id: str) -> list[str]:
        """What run `workflow_id`'s steps did on the tenant, in order."""
        path = self.folder / "side.txt"
        lines = path.read_text().splitlines() if path.exists() else []
        return [line.split(" ", 1)[1] for line in lines if line.startswith(workflow_id + " ")]

    @property
    def hold(self) -> Path:
        return self.folder / "hold"

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _wait_up(url: str, proc: subprocess.Popen[str], probe: str) -> None:
    def up() -> bool:
        assert proc.poll() is None, f"{url} exited"
        try:
            httpx.get(url + probe, timeout=10)
            return True
        except httpx.TransportError:
            return False

    eventually_sync(up, timeout=60, interval=0.05)


def start_tenant(folder: Path, port: int | None = None, workers: int = 1) -> Tenant:
    """The tenant on `port` (a free one by default), its side effects in side.txt;
    with `workers` > 1, uvicorn's supervisor restarts a worker that dies, and the
    listening socket stays open meanwhile."""
    (folder / "tenant_app.py").write_text(TENANT)
    port = port or free_port()
    env = environment(folder, "", {
        "SIDE_FILE": str(folder / "side.txt"), "HOLD_FILE": str(folder / "hold"),
        "REMOTE_SECRET": SECRET,
    })  # fmt: skip
    with (folder / "tenant.log").open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tenant_app:app", "--host", "127.0.0.1",
             "--port", str(port), *(["--workers", str(workers)] if workers > 1 else [])],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    tenant = Tenant(f"http://127.0.0.1:{port}/", port, folder, proc)
    _wait_up(f"http://127.0.0.1:{port}", proc, "/")
    return tenant


def start_orchestrator(folder: Path, tenant: Tenant) -> Served:
    """`tether serve` of the orchestrator app, on a SQLite file."""
    (folder / "orch.py").write_text(ORCHESTRATOR)
    db = f"sqlite:///{folder}/orch.db"
    port = free_port()
    env = environment(folder, db, {
        "TENANT_URL": tenant.url, "REMOTE_SECRET": SECRET,
        "NOBODY_URL": f"http://127.0.0.1:{free_port()}/",
    })  # fmt: skip
    with (folder / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [TETHER, "--db", db, "serve", "--app", "orch.py:app", "--port", str(port)],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", db, proc, folder)
    _wait_up(served.url, proc, "/api/v1/openapi.json")
    return served
