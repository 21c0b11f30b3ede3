"""Cancelling an agent run as a Symphony user does, with real agent processes (the
agent's shell, the agent, a background child it started): from this App, from
another process (`tether runs cancel`), by the tracker (the issue closed), mid-turn
and during a workspace hook. The cancel stops the run's step, which kills the turn's
(or the hook's) process group before the step ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
import tether.worker
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.trackers import MemoryTracker
from tether.testing import eventually

from ._procs import alive

HANG = 60  # a bound for a hang: the agent and the hooks work for 600 s unless stopped
RUN = "agent:memory:K-1"

AGENT = r"""
import json, os, subprocess, sys, time
sys.stdin.read()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(json.dumps({"type": "usage", "input_tokens": 500, "output_tokens": 40,
                  "cost_usd": 0.01}), flush=True)
print(json.dumps({"type": "message", "text": "working"}), flush=True)
home = os.environ["AGENT_HOME"]
with open(os.path.join(home, "starts.tmp"), "a") as f:
    f.write(f"{os.getpid()} {child.pid}\n")
os.replace(os.path.join(home, "starts.tmp"), os.path.join(home, "starts"))
time.sleep(600)
"""

# a hook that works for 600 s, in a background child too; ../pids once both run
HOOK = "sleep 600 & echo $$ $! > ../pids.tmp; mv ../pids.tmp ../pids; wait"


class Walk:
    """Issues K-1 and K-2, one agent at a time: K-1 dispatched, its job driven here."""

    def __init__(self, app: tether.App, tmp: Path, hooks: str = "") -> None:
        self.app, self.tmp, self.ws = app, tmp, tmp / "ws"
        (tmp / "agent.py").write_text(AGENT)
        issues = [Issue(id=i, identifier=i, title=i, state="todo") for i in ("K-1", "K-2")]
        self.tracker = MemoryTracker(issues)
        text = f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done]}}
workspace: {{root: {self.ws}}}
{hooks}
agent: {{backend: command, command: "{sys.executable} {tmp / "agent.py"}", max_turns: 1,
        stall_timeout_ms: 0, max_concurrent_agents: 1}}
---
Work on {{{{ issue.identifier }}}}
"""
        config = parse_workflow(text, path=tmp / "WORKFLOW.md")
        self.d = Dispatcher(app, config, tracker=self.tracker)
        self.driving: asyncio.Future[Any] | None = None
        self.dispatched: list[str] = []  # by the ticks so far

    async def tick(self) -> Any:
        report = await self.d.tick()
        self.dispatched += report.dispatched
        return report

    async def start(self) -> None:
        await self.tick()
        assert self.dispatched == ["K-1"]
        host = tether.worker.ServerlessHost(self.app, queues=("agents",))
        [job] = await host.aclaim(1)
        self.driving = asyncio.ensure_future(host.ahandle_job(job))

    async def pids(self, where: Path) -> list[int]:
        """The pids the agent (or hook) wrote in `where`, once it wrote them."""
        await eventually(where.exists, timeout=HANG)
        return [int(p) for p in where.read_text().split()]

    async def cancel(self, how: str, database_url: str) -> None:
        if how == "here":
            await self.app.acancel(RUN, "stop")
        elif how == "there":
            cli = str(Path(sys.executable).parent / "tether")
            done = await asyncio.to_thread(
                subprocess.run,
                [cli, "runs", "cancel", RUN, "--reason", "stop", "--db", database_url],
                capture_output=True, text=True, timeout=HANG, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        else:  # the issue closed: the dispatcher's next tick stops its run
            self.tracker.set_state("K-1", "done")
            assert (await self.tick()).stopped == [RUN]

    async def ended(self) -> None:
        assert self.driving is not None
        done, _ = await asyncio.wait({self.driving}, timeout=HANG)
        assert done, "the drive still waits for what the cancel should have stopped"


@pytest.fixture
def pids_left(tmp_path: Path) -> Iterator[list[int]]:
    """Pids the test saw: killed at its end, whatever it found."""
    seen: list[int] = []
    yield seen
    for pid in seen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["here", "there", "terminal"])
async def test_a_cancel_mid_turn_stops_the_agent_and_frees_its_slot(
    app: tether.App,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    pids_left: list[int],
    how: str,
) -> None:
    monkeypatch.setenv("AGENT_HOME", str(tmp_path))
    walk = Walk(app, tmp_path)
    await walk.start()
    pids_left += await walk.pids(tmp_path / "starts")
    await walk.cancel(how, database_url)
    await walk.ended()
    # no polling: the step ended once the agent's whole group was gone
    assert [alive(p) for p in pids_left] == [False, False]
    assert len((tmp_path / "starts").read_text().splitlines()) == 1  # never retried
    rec = await app.aget_record(RUN)
    assert rec.status is tether.RunStatus.CANCELLED
    turn = rec.steps["turn"]
    assert turn.status.value == "failed" and turn.error is not None
    assert "by the cancel" in turn.error.message
    # Symphony: a terminal issue's workspace goes, any other cancel keeps it
    assert (walk.ws / "K-1").is_dir() is (how != "terminal")
    report = await walk.tick()  # the slot is free: the other issue gets it
    assert walk.dispatched == ["K-1", "K-2"]
    if how != "terminal":  # a person's cancel holds the issue until `agents retry`
        assert "its run was cancelled" in report.skipped["K-1"]


@pytest.mark.parametrize("how", ["here", "there", "terminal"])
@pytest.mark.parametrize("hook", ["after_create", "before_run"])
async def test_a_cancel_during_a_hook_stops_its_process_group(
    app: tether.App,
    tmp_path: Path,
    database_url: str,
    pids_left: list[int],
    hook: str,
    how: str,
) -> None:
    walk = Walk(app, tmp_path, f'hooks: {{{hook}: "{HOOK}", timeout_ms: 600000}}')
    await walk.start()
    pids_left += await walk.pids(walk.ws / "pids")
    await walk.cancel(how, database_url)
    await walk.ended()
    assert [alive(p) for p in pids_left] == [False, False]
    assert not (tmp_path / "starts").exists()  # no agent started
    rec = await app.aget_record(RUN)
    assert rec.status is tether.RunStatus.CANCELLED
    assert rec.steps["workspace"].status.value == "failed"
    assert (walk.ws / "K-1").is_dir() is (how != "terminal")


@pytest.mark.parametrize("phase", ["turn", "hook"])
async def test_a_working_agent_or_hook_reads_nothing_of_its_run(
    app: tether.App,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    pids_left: list[int],
    phase: str,
) -> None:
    """Before: the turn (and a hook) read its run five times a second to see whether
    it was cancelled, each agent (ten agents, fifty reads a second), and a cancel from
    another process was then handled twice: the turn returned a made-up failure that
    the step boundary refused, beside the step's own cancel. The process's claim
    renewal, every second for all of its runs, tells the cancel instead."""
    monkeypatch.setenv("AGENT_HOME", str(tmp_path))
    hooks = f'hooks: {{before_run: "{HOOK}", timeout_ms: 600000}}' if phase == "hook" else ""
    walk = Walk(app, tmp_path, hooks)
    store = app.store
    reads, renewals = [], []
    get_run, renew_owner = store.get_run, store.renew_owner

    async def counted_get_run(workflow_id: str, *a: Any, **kw: Any) -> Any:
        reads.append(workflow_id)
        return await get_run(workflow_id, *a, **kw)

    async def counted_renew_owner(owner: str, driven: Any, *a: Any, **kw: Any) -> Any:
        renewals.append(list(driven))
        return await renew_owner(owner, driven, *a, **kw)

    monkeypatch.setattr(store, "get_run", counted_get_run)
    monkeypatch.setattr(store, "renew_owner", counted_renew_owner)
    await walk.start()
    pids_left += await walk.pids(tmp_path / "starts" if phase == "turn" else walk.ws / "pids")
    reads.clear(), renewals.clear()
    # two of the renewals that check the run for a cancel (a second apart)
    await eventually(lambda: sum(RUN in r for r in renewals) >= 2, timeout=HANG)
    assert RUN not in reads
    await walk.cancel("there", database_url)
    await walk.ended()
    assert [alive(p) for p in pids_left] == [False, False]


async def test_the_usage_an_agent_told_before_its_cancel_is_logged(
    app: tether.App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pids_left: list[int]
) -> None:
    """The agent told 500 + 40 tokens and $0.01 before it was stopped: billed, they
    belong in the AI call log (or a call of unknown cost), never nothing."""
    monkeypatch.setenv("AGENT_HOME", str(tmp_path))
    walk = Walk(app, tmp_path)
    await walk.start()
    pids_left += await walk.pids(tmp_path / "starts")
    await app.acancel(RUN, "stop")
    await walk.ended()
    [usage] = await app.ausage(run=RUN)
    assert usage.calls >= 1 and (usage.input_tokens == 500 or usage.unknown_cost_calls == 1)
