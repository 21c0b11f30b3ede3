"""An App used only through its async API and never closed, in real processes.

Before: ``asyncio.run(main())`` driving ``await app.arun(...)`` on PostgreSQL,
with no ``aclose()`` nor ``async with``, left the loop's connections open to the
end of the process, where psycopg reported each one collected unclosed (a
ResourceWarning; an "Exception ignored" trace under ``-W error``). SQLite was
quiet. Now the store's connections close as the loop that opened them ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tether import App, RunStatus

from ._env import child_pythonpath
from ._postgres import PostgresServer

MODULE = textwrap.dedent(
    """
    import asyncio, os
    import tether

    app = tether.App(os.environ["DB"])
    began = None  # set by step "b" as it begins

    @app.workflow()
    async def five(wf: tether.Workflow) -> int:
        for i in range(1, 6):
            await wf.step(f"s{i}", lambda i=i: i)
        return 5

    async def effect(line: str) -> str:
        with open(os.environ["LEDGER"], "a") as f:
            f.write(line + "\\n")
        return line

    @app.workflow()
    async def gated(wf: tether.Workflow) -> str:
        await wf.step("a", lambda: effect("a"))

        async def b() -> str:
            await effect("b")
            if began is not None:  # the first process: its loop ends in this step
                began.set()
                await asyncio.Event().wait()
            return "b"

        return await wf.step("b", b)
    """
)

# what a script that cleans up after itself leaves on stderr under -X dev: nothing of these
NOISE = ("Warning", "Traceback", "Exception ignored", "was destroyed", "Event loop is closed")


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The child's environment: module `m` (MODULE) on its path, on `database_url`."""
    (tmp_path / "m.py").write_text(MODULE)
    mine = {"DB": database_url, "LEDGER": str(tmp_path / "ledger")}
    return {**os.environ, **mine, "PYTHONPATH": child_pythonpath(tmp_path)}


def _py(env: dict[str, str], flag: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flag.split(), "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _quiet(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr
    noise = [line for line in done.stderr.splitlines() if any(n in line for n in NOISE)]
    assert noise == [], done.stderr


@pytest.mark.parametrize("flag", ["-W error::ResourceWarning", "-X dev"])
def test_the_async_api_never_closed_exits_without_warnings(env: dict[str, str], flag: str) -> None:
    """Two loops, one after the other: each one's connections close as it ends."""
    done = _py(
        env,
        flag,
        """
        import asyncio
        import m

        async def main() -> int:
            return (await m.app.arun(m.five)).value

        print(asyncio.run(main()), asyncio.run(main()))
        """,
    )
    _quiet(done)
    assert done.stdout.split() == ["5", "5"]
    if flag.startswith("-W"):  # the warning, raised, was printed as an ignored exception
        assert done.stderr == ""


def test_a_run_in_flight_as_the_loop_ends_is_handed_back_quietly(env: dict[str, str]) -> None:
    """A run started in the background is cut as ``asyncio.run`` ends (it cancels every
    task): it is handed back, the connections close after, and nothing is lost: the
    next process goes on from the step cut, not from the start."""
    cut = _py(
        env,
        "-X dev",
        """
        import asyncio
        import m

        async def main() -> None:
            m.began = asyncio.Event()
            await m.app.astart(m.gated, workflow_id="g1")
            await m.began.wait()

        asyncio.run(main())
        """,
    )
    _quiet(cut)
    app = App(env["DB"])
    try:
        record = app.get_record("g1")
        assert record.status is RunStatus.PENDING
        assert record.events[-1].type == "workflow.handed_back"
    finally:
        app.close()
    resumed = _py(env, "-X dev", "import m\nprint(m.app.resume('g1').value)")
    _quiet(resumed)
    assert resumed.stdout.strip() == "b"
    assert Path(env["LEDGER"]).read_text().split() == ["a", "b", "b"]


def test_the_servers_connections_are_gone_once_the_loop_ended(postgres: PostgresServer) -> None:
    """Not a warning silenced: the server sees every connection of the ended loop go
    while the process still lives (before, they stayed until it exited)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    name = f"tether_loop_end_{uuid.uuid4().hex[:8]}"
    url = postgres.url_with_schema(schema) + f"&application_name={name}"
    code = f"""
        import asyncio
        import psycopg
        import tether
        from tether.testing import eventually_sync

        app = tether.App({url!r})

        async def one(wf: tether.Workflow) -> int:
            return await wf.step("s", lambda: 1)

        async def main() -> None:
            await app.arun(one)
            await app.store.wait_for_change("run:nobody", 0.01)  # opens the listener too

        def mine() -> int:
            with psycopg.connect({postgres.url!r}, autocommit=True) as conn:
                sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                return conn.execute(sql, [{name!r}]).fetchone()[0]

        asyncio.run(main())
        eventually_sync(lambda: mine() == 0, timeout=5)
        print("closed")
        """
    try:
        done = _py({**os.environ, "PYTHONPATH": child_pythonpath()}, "-X dev", code)
    finally:
        postgres.drop_schema(schema)
    _quiet(done)
    assert done.stdout.strip() == "closed"
