"""A run re-judges its issue as the dispatcher judges a candidate, between turns and
before its hand-off: reassigned (no longer dispatchable) or newly blocked under its
agent, it takes no further turn and is not handed off. Linear served over real HTTP,
real agent processes, a fake clock."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
import tether.worker
from tether.agents import Dispatcher, parse_workflow
from tether.testing import eventually

from ._procs import of
from .trackers._servers import FakeLinear, served


class AssignedLinear(FakeLinear):
    """FakeLinear whose issues have an assignee (`assignee` in an issue's record)."""

    def node(self, issue_id: str) -> dict[str, Any]:
        found = super().node(issue_id)
        who = self.issues[issue_id].get("assignee")
        found["assignee"] = {"id": who} if who else None
        return found


@pytest.fixture
def linear() -> Iterator[AssignedLinear]:
    yield from served(AssignedLinear())


def _dispatcher(app: tether.App, tmp: Path, home: Path, fake: FakeLinear, turns: int) -> Dispatcher:
    config = parse_workflow(
        f"""---
tracker: {{kind: linear, team: ENG, endpoint: "{fake.base}", api_key: {fake.key},
          assignee: me, handoff_state: Human Review}}
workspace: {{root: {tmp / "ws"}}}
agent: {{backend: command, command: "{sys.executable} {home / "agent.py"}",
        stall_timeout_ms: 0, max_turns: {turns}}}
---
Work on {{{{ issue.identifier }}}}
""",
        path=tmp / "WORKFLOW.md",
    )
    return Dispatcher(app, config)


async def _first_turn_then(app: tether.App, home: Path, change: Any) -> None:
    """Drive ENG-1's run; while its first turn works, `change()` the issue; then let the
    turn end and the run go on until it parks or ends."""
    (home / "block-ENG-1").touch()
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    [job] = await host.aclaim(1)
    driving = asyncio.ensure_future(host.ahandle_job(job))
    await eventually(lambda: of(home, "ENG-1", "start"), timeout=30)
    change()
    (home / "block-ENG-1").unlink()
    await asyncio.wait_for(driving, 60)


@pytest.mark.parametrize("turns", [1, 3], ids=["last-turn", "mid-run"])
async def test_an_issue_reassigned_under_its_agent_takes_no_more_turns_nor_a_hand_off(
    app: tether.App, tmp_path: Path, home: Path, linear: AssignedLinear, turns: int
) -> None:
    """Before: between turns only the state and labels were looked at, so a run whose
    issue was given to somebody else took every turn left, then moved the issue to the
    hand-off state under its new owner (a tick would have cancelled it, later)."""
    linear.add("ENG-1", "Fix it")
    linear.issues["uuid-ENG-1"]["assignee"] = "me"
    d = _dispatcher(app, tmp_path, home, linear, turns)
    assert (await d.tick()).dispatched == ["ENG-1"]

    def reassign() -> None:
        linear.issues["uuid-ENG-1"]["assignee"] = "somebody-else"

    await _first_turn_then(app, home, reassign)
    assert len(of(home, "ENG-1", "end")) == 1  # no turn after the one it was in
    assert linear.issues["uuid-ENG-1"]["state"] == "s1"  # still Todo: not handed off
    [row] = await d.status()
    assert row.phase != "running"


@pytest.mark.parametrize("turns", [1, 3], ids=["last-turn", "mid-run"])
async def test_an_issue_blocked_under_its_agent_ends_its_run_without_a_hand_off(
    app: tether.App, tmp_path: Path, home: Path, linear: AssignedLinear, turns: int
) -> None:
    """Symphony: a `todo` issue with an open blocker is not worked on. One blocked while
    its agent worked stops after that turn, is not handed off, and its run ends
    (released, not retried: its continuation would have dispatched it again); once
    the blocker is done, a tick dispatches it anew."""
    linear.add("ENG-1", "Fix it")
    linear.add("ENG-2", "The blocker", state="s3")  # Human Review: open, not active
    for ident in ("ENG-1", "ENG-2"):
        linear.issues[f"uuid-{ident}"]["assignee"] = "me"
    d = _dispatcher(app, tmp_path, home, linear, turns)
    assert (await d.tick()).dispatched == ["ENG-1"]

    def block() -> None:
        linear.issues["uuid-ENG-1"]["blocked_by"] = ("uuid-ENG-2",)

    await _first_turn_then(app, home, block)
    assert len(of(home, "ENG-1", "end")) == 1
    assert linear.issues["uuid-ENG-1"]["state"] == "s1"
    run = await app.aget_run("agent:linear:ENG-1")
    assert run.status.value == "completed"
    assert json.loads(run.output or "{}") == {"issue": "ENG-1", "released": "blocked by ENG-2"}
    assert (await d.tick()).dispatched == []  # still blocked: left alone
    linear.issues["uuid-ENG-2"]["state"] = "s4"  # the blocker is done
    assert (await d.tick()).dispatched == ["ENG-1"]


async def test_an_issue_still_ours_and_unblocked_takes_every_turn_and_is_handed_off(
    app: tether.App, tmp_path: Path, home: Path, linear: AssignedLinear
) -> None:
    """The re-check lets an eligible issue go on: a blocker that is done is no block."""
    linear.add("ENG-1", "Fix it")
    linear.add("ENG-2", "The blocker", state="s4")
    linear.issues["uuid-ENG-1"]["assignee"] = "me"
    d = _dispatcher(app, tmp_path, home, linear, 3)
    assert (await d.tick()).dispatched == ["ENG-1"]

    def block_by_a_done_issue() -> None:
        linear.issues["uuid-ENG-1"]["blocked_by"] = ("uuid-ENG-2",)

    await _first_turn_then(app, home, block_by_a_done_issue)
    assert len(of(home, "ENG-1", "end")) == 3
    assert linear.issues["uuid-ENG-1"]["state"] == "s3"  # handed off to Human Review
