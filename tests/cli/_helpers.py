"""Helpers of the `tether` command's tests: a workflow file, and the command run as a
real process (the venv's console script) in a temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tether import App

TETHER = str(Path(sys.executable).with_name("tether"))
ROOT = Path(__file__).resolve().parents[2]

FLOW = textwrap.dedent(
    """
    import asyncio
    import os

    from pydantic import BaseModel

    import tether

    class Who(BaseModel):
        name: str

    def effect(name):
        with open(os.environ["EFFECTS"], "a") as f:
            f.write(name + "\\n")
        return name

    async def greet(wf: tether.Workflow, who: Who) -> str:
        await wf.step("hello", lambda: effect("hello"))
        await wf.step("world", lambda: effect("world"))
        return "hi " + who.name  # an attribute: the input arrives as the model, not a dict

    async def broken(wf: tether.Workflow) -> None:
        await wf.step("ok", lambda: 1)
        raise RuntimeError("the agent gave up")

    async def misuses_api(wf: tether.Workflow) -> None:
        await wf.touch_lease("slot", holder="me", ttl=-1)  # tether's own error, raised in the run

    async def naps(wf: tether.Workflow) -> str:
        return await wf.step("nap", lambda: asyncio.sleep(0.6, result="rested"))

    async def waits(wf: tether.Workflow) -> object:
        return await wf.wait_for_signal("go")

    async def undone(wf: tether.Workflow) -> None:
        await wf.step("reserve", lambda: effect("reserve"), compensate=lambda r: effect("release"))
        raise RuntimeError("declined")

    async def holds(wf: tether.Workflow) -> object:
        await wf.step("reserve", lambda: effect("reserve"), compensate=lambda r: effect("release"))
        return await wf.wait_for_signal("go")

    app = tether.App(os.environ["FLOWS_DB"])
    for _fn in (greet, broken, waits, holds):
        app.workflow(_fn)
    """
)


def tether(
    tmp: Path,
    *args: str,
    db: str | None = None,
    use_db: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`tether --db <tmp>/t.db ARGS` in `tmp`, with no $TETHER_DATABASE_URL to fall back on
    (unless `env` sets it): the venv's console script, a real process."""
    url = f"sqlite:///{tmp}/t.db" if db is None else db
    environ = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    environ |= {"EFFECTS": str(tmp / "effects.log"), "FLOWS_DB": url, "COLUMNS": "200"}
    environ |= env or {}
    return subprocess.run(
        [TETHER, *(["--db", url] if use_db else []), *args],
        cwd=tmp,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def peak_kib(tmp: Path, url: str, *args: str) -> int:
    """The peak resident memory (KiB) of `tether --db URL ARGS`, a real process."""
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    proc = subprocess.Popen(
        [TETHER, "--db", url, *args], cwd=tmp, env=env, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return usage.ru_maxrss


def effects(tmp: Path) -> list[str]:
    log = tmp / "effects.log"
    return log.read_text().split() if log.exists() else []


def create(url: str) -> str:
    """Make an empty tether database at `url` (reading commands never create one)."""
    app = App(url)
    app.list_runs()
    app.close()
    return url


def record_summaries(url: str, *workflow_ids: str) -> None:
    """Runs of a workflow making two AI calls, one priced and one not (a fake
    provider: 1,000 input and 100 output tokens each), for the usage views."""
    from tether import Workflow, ai

    fake = ai.FakeModel(usage=ai.Usage(input_tokens=1000, output_tokens=100))
    prices = ai.Prices({"fake:cheap": {"input_per_million": 1.0, "output_per_million": 10.0}})
    app = App(url, ai=ai.Providers(fake=fake, prices=prices))

    @app.workflow(name="summarise")
    async def summarise(wf: Workflow) -> str:
        await wf.ai.generate_text("fake:cheap", prompt="a")
        await wf.ai.generate_text("fake:unpriced", prompt="b")
        return "done"

    for wid in workflow_ids:
        app.run(summarise, workflow_id=wid)
    app.close()


SLOW = (  # 30 steps of 0.1 s, each logging its number to ticks.log; from the fourth on
    # each waits for a file `go` too, made once the run was interrupted (`interrupted`):
    # the interrupt lands mid-run, however slow the machine
    "import asyncio, os\n\nasync def tick(i):\n"
    "    with open('ticks.log', 'a') as f:\n"
    "        f.write(f'{i}\\n')\n"
    "    while i >= 3 and not os.path.exists('go'):\n"
    "        await asyncio.sleep(0.01)\n"
    "    await asyncio.sleep(0.1)\n\n"
    "async def slow(wf):\n"
    "    for i in range(30):\n"
    "        await wf.step(f's{i}', lambda: tick(i))\n"
    "    return 'done'\n"
)


def interrupted(tmp: Path, sig: int, *args: str) -> subprocess.CompletedProcess[str]:
    """`tether ARGS` (a run of `SLOW`, in `tmp`) sent `sig` once three of its steps
    have run: a real process, its stdout and stderr captured."""
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    proc = subprocess.Popen(
        [TETHER, *args], cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ticks = tmp / "ticks.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # interrupt once a few steps have run
        if ticks.exists() and len(ticks.read_text().split()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    try:
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        (tmp / "go").touch()  # what comes next (a resume) runs the rest freely
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
