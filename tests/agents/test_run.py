"""The durable run of one issue (`_run.py`): its retries, its sessions' token totals
and the tracker cooldown, with real agent processes and a fake clock."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

import tether
import tether.worker
from tether.agents import Dispatcher, Issue, parse_workflow
from tether.agents.trackers import MemoryTracker
from tether.testing import eventually

from ._procs import of
from .trackers._servers import FakeGitHub, reset_in

NO_SLOTS = "no available orchestrator slots"
MEMORY = "kind: memory, active_states: [todo], terminal_states: [done]"


def _workflow(
    tmp: Path, command: str, agent: str = "max_turns: 1", tracker: str = MEMORY
) -> tether.agents.WorkflowFile:
    return parse_workflow(
        f"""---
tracker: {{{tracker}, handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: command, command: "{command}", stall_timeout_ms: 0, {agent}}}
---
Work on {{{{ issue.identifier }}}}
""",
        path=tmp / "WORKFLOW.md",
    )


def _issue(ident: str, **kw: object) -> Issue:
    return Issue(id=ident, identifier=ident, title=f"title {ident}", state="todo", **kw)  # type: ignore[arg-type]


async def _drive(app: tether.App) -> None:
    """Drive every claimable run of the agents queue until each parks or ends."""
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    while jobs := await host.aclaim(1):
        await host.ahandle_job(jobs[0])


async def _due(app: tether.App, seconds: float) -> None:
    clock = app.clock
    assert isinstance(clock, tether.FakeClock)
    clock.advance(seconds)
    await app.afire_due_timers()


async def test_a_retry_that_found_no_slot_takes_one_once_it_is_free(
    app: tether.App, tmp_path: Path, home: Path
) -> None:
    """The agents that ran beside a retry when it found no slot are not counted again
    at its next try: once they are gone, it runs."""
    (home / "fail-B-1").write_text("1")  # B-1's first attempt fails
    (home / "block-A-1").touch()  # A-1's agent works until told to finish
    agent = f"{sys.executable} {home / 'agent.py'}"
    config = _workflow(tmp_path, agent, "max_turns: 1, max_concurrent_agents_by_state: {todo: 1}")
    tracker = MemoryTracker([_issue("B-1", priority=1), _issue("A-1", priority=2)])
    d = Dispatcher(app, config, tracker=tracker)
    assert (await d.tick()).dispatched == ["B-1"]  # the only `todo` slot
    await _drive(app)  # B-1 fails: its retry is due in 10 s
    assert (await d.tick()).dispatched == ["A-1"]
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    [job] = await host.aclaim(1)
    driving = asyncio.ensure_future(host.ahandle_job(job))
    await eventually(lambda: of(home, "A-1", "start"), timeout=30)
    await _due(app, 10)
    await _drive(app)  # B-1's retry finds A-1's agent in the slot: it waits again (20 s)
    [b] = [row for row in await d.status() if row.identifier == "B-1"]
    assert (b.phase, b.reason) == ("retrying", NO_SLOTS)
    (home / "block-A-1").unlink()
    await asyncio.wait_for(driving, 30)
    assert tracker.issues["A-1"].state == "review"  # done: nothing runs now
    await _due(app, 20)
    await _drive(app)
    assert tracker.issues["B-1"].state == "review" and len(of(home, "B-1", "end")) == 1


SESSION = r"""
import json, os, sys
sys.stdin.read()
def say(**line):
    print(json.dumps(line), flush=True)
if not os.environ.get("TETHER_SESSION_ID"):  # the session so far: 1000 in, 100 out
    say(type="usage", session_id="s-1", input_tokens=1000, output_tokens=100)
    say(type="input_required", session_id="s-1", question="which file?")
else:  # the same session, answered: its running total is 1500 / 150 now
    say(type="usage", session_id="s-1", input_tokens=1500, output_tokens=150)
    say(type="result", status="completed", session_id="s-1")
"""


@pytest.mark.parametrize(
    "script_text",
    [
        SESSION,
        # the session named only on the question (as examples/agents/agent.py names it on
        # its result): before, its first 1000 / 100 were counted again after the answer
        SESSION.replace(
            'type="usage", session_id="s-1", input_tokens=1000', 'type="usage", input_tokens=1000'
        ),
    ],
    ids=["named-on-every-line", "named-at-the-end"],
)
async def test_an_answered_session_counts_its_tokens_once(
    app: tether.App, tmp_path: Path, script_text: str
) -> None:
    """The totals a session reported before it asked are carried into the attempt that
    continues it after the answer: its next total becomes a delta, not counted again."""
    assert script_text.count('session_id="s-1"') in (3, 4)
    script = tmp_path / "session.py"
    script.write_text(script_text)
    tracker = MemoryTracker([_issue("S-1")])
    d = Dispatcher(app, _workflow(tmp_path, f"{sys.executable} {script}"), tracker=tracker)
    await d.run_once()
    [row] = await d.status()
    assert row.phase == "waiting" and row.tokens == 1100
    await d.answer("S-1", "hello.txt")
    await d.run_once()
    assert tracker.issues["S-1"].state == "review"
    [usage] = await app.ausage(run="agent:memory:S-1")
    assert (usage.input_tokens, usage.output_tokens) == (1500, 150)


async def test_a_run_waits_out_the_tracker_cooldown_before_its_hand_off(
    app: tether.App, tmp_path: Path, home: Path, github: FakeGitHub
) -> None:
    """Nobody asks a rate-limited tracker until its cooldown ends, the issue runs
    neither: the re-check between turns is skipped (the agent goes on) and the hand-off
    waits (a durable timer), then happens."""
    github.add(1, "Fix the typo", labels=("agent",))
    tracker = (
        f'kind: github, repo: acme/api, endpoint: "{github.base}", api_key: gh-token, '
        "active_states: [open], terminal_states: [closed]"
    )
    agent = f"{sys.executable} {home / 'agent.py'}"
    d = Dispatcher(app, _workflow(tmp_path, agent, "max_turns: 2", tracker))
    assert (await d.tick()).dispatched == ["api#1"]
    github.rate_limit_next = reset_in(300)
    before = len(github.requests)
    limited = await d.tick()  # the poll meets the rate limit: a cooldown row
    assert limited.errors and await d.tracker_cooldown() is not None
    asked = len(github.requests)
    assert asked == before + 1  # the tick asks nothing more (no refresh) after it
    await _drive(app)
    assert len(github.requests) == asked  # not one request from the run
    assert len(of(home, "api#1", "end")) == 2  # both turns ran
    run = await app.aget_run("agent:github:api#1")
    assert run.status.value == "waiting"
    assert [lab["name"] for lab in github.issues[1]["labels"]] == ["agent"]
    await _due(app, 301)
    await _drive(app)
    assert [lab["name"] for lab in github.issues[1]["labels"]] == ["agent", "review"]
    assert (await app.aget_run("agent:github:api#1")).status.value == "completed"


async def test_a_tracker_down_for_many_retries_never_fails_the_run(tmp_path: Path) -> None:
    """Each retry whose re-check cannot read the tracker waits and re-checks again,
    forever (Symphony): that must not use up the stack (before: each one recursed,
    and after ~1,000 of them, hours of an outage at a short backoff, the run failed
    on Python's recursion limit, and the issue was held as failed). The limit is
    lowered here so a few hundred retries show it. Each retry parks its run (a
    drive a retry), and each drive replays every retry before it in one go."""
    import inspect

    async with tether.App(f"sqlite:///{tmp_path}/t.db", clock=tether.FakeClock()) as app:
        config = _workflow(tmp_path, "exit 3", "max_turns: 1, max_retry_backoff_ms: 1")
        tracker = MemoryTracker([_issue("R-1")])
        d = Dispatcher(app, config, tracker=tracker)
        assert (await d.tick()).dispatched == ["R-1"]
        tracker.fail_reads = 400  # the re-check of every retry fails, 400 times
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(len(inspect.stack()) + 250)
        try:
            for _ in range(500):
                await _drive(app)
                if tracker.fail_reads == 0:
                    break
                await _due(app, 0.01)  # the next retry (1 ms) is due
        finally:
            sys.setrecursionlimit(limit)
        run = await app.aget_run("agent:memory:R-1")
        assert run.status.value != "failed", run.error
        assert tracker.fail_reads == 0
