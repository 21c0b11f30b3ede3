"""Crash walk: what a dispatcher killed with SIGKILL leaves behind is taken over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

import tether
import tether.worker
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents._workspace import reap_orphan, record_agent
from tether.agents.backends import AgentEvent, MockBackend, OnEvent, TurnRequest, TurnResult
from tether.agents.trackers import MemoryTracker
from tether.testing import eventually, eventually_sync

from ._procs import alive


@pytest.mark.timeout(60)
async def test_a_child_the_dead_agent_left_in_its_group_is_killed_on_takeover(
    tmp_path: Path,
) -> None:
    """The dispatcher is SIGKILLed; its agent dies of the broken pipe, but the test
    run the agent started lives on in the agent's process group, in the workspace.
    Whoever takes the run over must kill it, not only a leader still alive."""
    ws = tmp_path / "ws" / "A-1"
    ws.mkdir(parents=True)
    agent = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $! > child; wait"], cwd=ws, start_new_session=True
    )
    child = 0
    try:
        record_agent(ws, agent.pid)
        eventually_sync(lambda: _written(ws / "child"), timeout=30)
        child = int((ws / "child").read_text())
        os.kill(agent.pid, signal.SIGKILL)  # the agent alone dies: its child does not
        agent.wait(timeout=30)
        assert alive(child)
        assert await reap_orphan(ws)
        assert not alive(child)
    finally:
        agent.kill()
        agent.wait(timeout=30)
        if child and alive(child):
            os.kill(child, signal.SIGKILL)


def _written(path: Path) -> bool:
    return path.exists() and path.read_text().strip() != ""


@pytest.mark.timeout(60)
async def test_a_group_whose_pid_was_reused_is_left_alone(tmp_path: Path) -> None:
    """The recorded leader is gone and its pid now leads someone else's group (a
    different start time): nothing of it is killed."""
    ws = tmp_path / "ws" / "A-1"
    ws.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        (ws.parent / ".A-1.agent").write_text(f'{{"pgid": {other.pid}, "started": "1"}}')
        assert not await reap_orphan(ws)
        assert alive(other.pid)
    finally:
        other.kill()
        other.wait()


class _Gate:
    """An agent backend that counts the turns at work at once; each waits for `go`."""

    name = "gate"

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.active = 0
        self.most = 0
        self.started: list[str] = []

    async def run_turn(self, request: TurnRequest, on_event: OnEvent) -> TurnResult:
        self.active += 1
        self.most = max(self.most, self.active)
        self.started.append(str(request.issue["identifier"]))
        try:
            await on_event(AgentEvent("message", message="working"))
            await self.go.wait()
            return TurnResult("completed", message="done")
        finally:
            self.active -= 1


@pytest.mark.timeout(120)
async def test_a_burst_of_40_issues_runs_3_at_a_time_in_priority_order(
    database_url: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, "max_concurrent_agents: 3, stall_timeout_ms: 0")
    issues = [
        Issue(id=f"B-{n}", identifier=f"B-{n:02d}", title="t", state="todo", priority=4 - n % 4)
        for n in range(40)
    ]
    tracker = MemoryTracker(issues)
    gate = _Gate()
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, config, tracker=tracker, backend=gate)
        stop = asyncio.Event()
        serving = asyncio.ensure_future(d.serve(stop=stop))
        try:
            await eventually(lambda: gate.active == 3, timeout=30)
            first = sorted(gate.started)
            gate.go.set()
            await eventually(
                lambda: all(i.state == "review" for i in tracker.issues.values()), timeout=90
            )
        finally:
            stop.set()
            await asyncio.wait_for(serving, 60)
    assert gate.most == 3
    assert sorted(gate.started) == sorted(i.identifier for i in issues)  # each once
    # the first three at work are of the most urgent priority (1): B-03, B-07, B-11
    assert first == ["B-03", "B-07", "B-11"]


class _Heartbeats:
    """An agent that only ever says it is alive: no progress, no end. Each heartbeat
    lets a minute of `clock` pass, so a stall shows on a FakeClock at once."""

    name = "heartbeats"

    def __init__(self, clock: tether.FakeClock) -> None:
        self.clock = clock
        self.turns = 0
        self.stopped = 0

    async def run_turn(self, request: TurnRequest, on_event: OnEvent) -> TurnResult:
        self.turns += 1
        try:
            while True:
                await on_event(AgentEvent("heartbeat", progress=False))
                self.clock.advance(60)
                await asyncio.sleep(0.01)
        finally:
            self.stopped += 1


async def test_a_stalled_agent_is_stopped_and_retried_with_the_documented_backoff(
    database_url: str, tmp_path: Path
) -> None:
    """The stall is judged by the App's clock: the default five minutes without
    progress pass on a FakeClock, not in real time. Before, the stall timer read
    `time.monotonic()`, and this turn went on for five real minutes."""
    config = _config(tmp_path, "stall_timeout_ms: 300000, max_retries: 5")
    tracker = MemoryTracker([Issue(id="S-1", identifier="S-1", title="t", state="todo")])
    clock = tether.FakeClock()
    agent = _Heartbeats(clock)
    async with tether.App(database_url, clock=clock) as app:
        d = Dispatcher(app, config, tracker=tracker, backend=agent)
        dues = []
        for _ in range(3):
            report = await asyncio.wait_for(d.run_once(), 30)
            assert report.failed == ["agent:memory:S-1"]
            [row] = await d.status()
            assert row.phase == "retrying"
            assert str(row.reason).startswith("stalled: no progress for 300000 ms")
            due = datetime.fromisoformat(str(row.due_at))
            dues.append((due - clock.now()).total_seconds())
            clock.advance(dues[-1])
        assert dues == [10.0, 20.0, 40.0]
        assert agent.turns == agent.stopped == 3  # each stalled turn was stopped


def _config(tmp: Path, agent: str, extra: str = "") -> tether.agents.WorkflowFile:
    """A memory tracker, one turn per attempt; `agent` adds keys to the `agent` map,
    `extra` sections."""
    return parse_workflow(
        f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done], handoff_state: review}}
polling: {{interval_ms: 50}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: mock, max_turns: 1, {agent}}}
{extra}---
Work on {{{{ issue.identifier }}}}""",
        path=tmp / "WORKFLOW.md",
    )


async def test_an_issue_moved_out_of_the_active_states_mid_run_keeps_its_workspace(
    database_url: str, tmp_path: Path
) -> None:
    """Moved to a state neither active nor terminal under a running agent: the next
    tick stops the agent, `after_run` runs, the workspace stays; moved back, the issue
    is dispatched again (a new run) into that same workspace."""
    hooks = 'hooks: {after_create: "echo made >> made.txt", after_run: "echo ran >> ran.txt"}\n'
    config = _config(tmp_path, "stall_timeout_ms: 0", hooks)
    tracker = MemoryTracker([Issue(id="M-1", identifier="M-1", title="t", state="todo")])
    backend = MockBackend([{"block": 60}, {"files": {"out.txt": "done"}}])
    async with tether.App(database_url, clock=tether.FakeClock()) as app:
        d = Dispatcher(app, config, tracker=tracker, backend=backend)
        host = tether.worker.ServerlessHost(app, queues=("agents",))
        await d.tick()
        [job] = await host.aclaim(1)
        driving = asyncio.ensure_future(host.ahandle_job(job))
        await eventually(lambda: len(backend.requests) == 1, timeout=60)
        tracker.set_state("M-1", "blocked")
        assert (await d.tick()).stopped == ["agent:memory:M-1"]
        await asyncio.wait_for(driving, 60)
        ws = tmp_path / "ws" / "M-1"
        assert (ws / "ran.txt").read_text() == "ran\n"  # after_run, workspace kept
        tracker.set_state("M-1", "todo")
        assert (await d.run_once()).dispatched == ["M-1"]
        assert (await app.aget_run("agent:memory:M-1:2")).status.value == "completed"
        assert (ws / "out.txt").read_text() == "done"
        assert (ws / "made.txt").read_text() == "made\n"  # reused, not made again
