"""The dispatcher end to end on a real database: memory tracker, scripted agent."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

import tether
import tether.worker
from tether.agents import AgentsError, Dispatcher, Issue, WorkflowWatcher, parse_workflow
from tether.agents.backends import MockBackend
from tether.agents.trackers import MemoryTracker
from tether.testing import eventually

from ._procs import alive
from .trackers._servers import FakeGitHub, github_workflow, reset_in


def _config(tmp: Path, extra: str = "") -> tether.agents.WorkflowFile:
    return parse_workflow(_text(tmp, 3, extra), path=tmp / "WORKFLOW.md")


def _text(tmp: Path, max_turns: int, extra: str = "") -> str:
    return f"""---
tracker: {{kind: memory, active_states: [todo], terminal_states: [done], handoff_state: review}}
workspace: {{root: {tmp / "ws"}}}
hooks: {{after_create: "echo created > created.txt", before_run: "echo run >> runs.txt"}}
agent: {{backend: mock, max_turns: {max_turns}, max_retries: 2, stall_timeout_ms: 0}}
{extra}
---
Work on {{{{ issue.identifier }}}}: {{{{ issue.title }}}}{{% if attempt %}} (attempt {{{{ attempt }}}}){{% endif %}}
"""


def _issue(ident: str, **kw: object) -> Issue:
    return Issue(id=ident, identifier=ident, title=f"title {ident}", state="todo", **kw)  # type: ignore[arg-type]


@pytest.fixture
async def app(database_url: str) -> tether.App:
    the_app = tether.App(database_url, clock=tether.FakeClock(), inline_wait=5.0)
    yield the_app
    await the_app.aclose()


async def test_an_issue_runs_once_hands_off_and_its_run_ends(
    app: tether.App, tmp_path: Path
) -> None:
    tracker = MemoryTracker([_issue("A-1"), _issue("A-2", priority=1)])
    backend = MockBackend(
        [{"files": {"out.txt": "done"}, "usage": {"input_tokens": 100, "output_tokens": 20}}] * 6
    )
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    report = await d.run_once()
    assert report.dispatched == ["A-2", "A-1"]  # priority first
    # turn 1 gets the rendered prompt; while the issue stays active, continuation turns
    # follow up to max_turns (3); then the hand-off moves it out of the active states
    # (the two agents work side by side: their turns interleave)
    assert len(backend.requests) == 6
    for ident in ("A-1", "A-2"):
        prompts = [r.prompt for r in backend.requests if r.issue["identifier"] == ident]
        assert prompts[0] == f"Work on {ident}: title {ident}" and len(prompts) == 3
        assert prompts[1].startswith("Continuation turn #2 of 3")
    assert {i.state for i in tracker.issues.values()} == {"review"}
    for ident in ("A-1", "A-2"):
        run = await app.aget_run(f"agent:memory:{ident}")
        assert run.status.value == "completed"
        ws = tmp_path / "ws" / ident
        assert (ws / "out.txt").read_text() == "done"
        assert (ws / "created.txt").exists() and (ws / "runs.txt").read_text() == "run\n"
    usage = await app.ausage(run="agent:memory:A-1")
    assert usage[0].input_tokens == 100 and usage[0].output_tokens == 20
    again = await d.run_once()  # nothing active: nothing dispatched again
    assert again.dispatched == [] and len(backend.requests) == 6


async def test_failures_retry_on_durable_timers_then_wait_for_a_person(
    app: tether.App, tmp_path: Path
) -> None:
    clock = app.clock
    assert isinstance(clock, tether.FakeClock)
    tracker = MemoryTracker([_issue("B-1")])
    backend = MockBackend([{"result": "failed", "message": "tests fail"}] * 3 + [{}])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    await d.run_once()
    run = await app.aget_run("agent:memory:B-1")
    [row] = await d.status()
    assert run.status.value == "waiting" and row.phase == "retrying" and row.attempt == 1
    assert row.reason == "tests fail" and row.due_at is not None
    assert row.why == f"tests fail; due {row.due_at}"  # the status table shows both
    for seconds in (10, 20):  # 10 s × 2^(n−1): the timers are rows, not in memory
        clock.advance(seconds)
        await d.run_once()
    [row] = await d.status()
    assert row.phase == "waiting" and "retries exhausted (2)" in (row.reason or "")
    assert len(backend.requests) == 3
    again = await d.run_once()
    assert "B-1" in again.skipped and len(backend.requests) == 3  # held: not dispatched
    await d.retry("B-1")
    await d.run_once()
    assert len(backend.requests) >= 4 and tracker.issues["B-1"].state == "review"


async def test_an_issue_without_ai_calls_has_no_cost_rather_than_zero(
    app: tether.App, tmp_path: Path
) -> None:
    backend = MockBackend([{"result": "failed", "message": "tests fail"}])
    d = Dispatcher(app, _config(tmp_path), tracker=MemoryTracker([_issue("C-1")]), backend=backend)
    await d.run_once()
    [row] = await d.status()
    assert row.tokens == 0 and row.cost_usd is None  # nothing priced: unknown, never 0


async def test_an_agent_asking_for_input_waits_for_the_answer(
    app: tether.App, tmp_path: Path
) -> None:
    tracker = MemoryTracker([_issue("C-1")])
    backend = MockBackend([{"result": "input_required", "message": "which colour?"}, {}])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    await d.run_once()
    [row] = await d.status()
    # the question is shown wherever the run is: status, the record, the issue view
    assert row.phase == "waiting" and row.reason == "input_required: which colour?"
    assert row.question == "which colour?"
    record = await app.aget_record("agent:memory:C-1")
    assert isinstance(record.state, dict) and record.state["question"] == "which colour?"
    view = await d.issue_report("C-1")
    assert view is not None and view["question"] == "which colour?"
    [waiting] = (await d.state_report())["waiting"]
    assert waiting["question"] == "which colour?"
    await d.answer("C-1", "blue")
    await d.run_once()
    assert backend.requests[1].prompt == "blue"
    # the answer goes to the session that asked, not to a fresh one
    assert backend.requests[0].session_id is None
    assert backend.requests[1].session_id == "mock-C-1"
    assert backend.requests[1].workspace == backend.requests[0].workspace
    assert (await app.aget_run("agent:memory:C-1")).status.value == "completed"
    [ended] = await d.status(all_runs=True)
    assert ended.question is None  # answered: no longer asked


async def test_a_spent_budget_waits_as_such_and_an_answer_is_refused(
    app: tether.App, tmp_path: Path
) -> None:
    usage = {"usage": {"input_tokens": 100, "output_tokens": 20}}
    backend = MockBackend([usage] * 3)
    config = _config(tmp_path, "budget: {max_tokens: 50}")
    d = Dispatcher(app, config, tracker=MemoryTracker([_issue("G-1")]), backend=backend)
    await d.run_once()
    [row] = await d.status()
    assert row.phase == "waiting" and (row.reason or "").startswith("budget_exceeded")
    assert "raise budget.max_usd or budget.max_tokens" in (row.reason or "")
    assert row.question is None and len(backend.requests) == 1
    with pytest.raises(AgentsError) as err:  # an answer cannot raise a budget
        await d.answer("G-1", "go on")
    assert err.value.code == "budget_exceeded" and "tether agents retry G-1" in str(err.value)


async def test_a_budget_spent_for_the_day_goes_on_the_next_day(
    app: tether.App, tmp_path: Path
) -> None:
    """A per-issue budget over a period held the issue for a person, as a lifetime
    budget must: with a period it is the next period that lets it go on."""
    clock = app.clock
    assert isinstance(clock, tether.FakeClock)
    usage = {"usage": {"input_tokens": 100, "output_tokens": 20}}
    backend = MockBackend([usage] * 4)
    config = _config(tmp_path, "budget: {max_tokens: 50, period: day}")
    d = Dispatcher(app, config, tracker=MemoryTracker([_issue("G-2")]), backend=backend)
    await d.run_once()
    [row] = await d.status()
    assert row.phase == "retrying" and len(backend.requests) == 1
    assert "spent today; retried when the next day begins, at 2026-01-02T00:00:00" in (
        row.reason or ""
    )
    clock.advance(3600)
    await d.run_once()
    assert len(backend.requests) == 1  # the same day: still spent
    clock.advance(23 * 3600)
    await d.run_once()
    assert len(backend.requests) == 2  # the next day: one turn, then spent again


async def test_an_answer_to_a_run_that_is_not_asking_is_refused(
    app: tether.App, tmp_path: Path
) -> None:
    backend = MockBackend([{"result": "failed", "message": "tests fail"}])
    d = Dispatcher(app, _config(tmp_path), tracker=MemoryTracker([_issue("H-1")]), backend=backend)
    await d.run_once()
    [row] = await d.status()
    assert row.status == "waiting" and row.phase == "retrying"  # a timer, not a person
    with pytest.raises(AgentsError) as err:
        await d.answer("H-1", "blue")
    assert err.value.code == "not_waiting" and "waiting, retrying" in str(err.value)


async def test_retry_of_an_ended_run_asks_the_tracker_first(
    app: tether.App, tmp_path: Path
) -> None:
    tracker = MemoryTracker([_issue("E-1")])
    backend = MockBackend([{}] * 6)
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    await d.run_once()
    assert tracker.issues["E-1"].state == "review"  # handed off: its run completed
    with pytest.raises(AgentsError, match=r"\(its run is completed\);"):  # as it ended
        await d.answer("E-1", "blue")
    with pytest.raises(AgentsError) as err:
        await d.retry("E-1")
    assert err.value.code == "not_eligible"
    assert "state 'review' is not active; move it to an active state (todo)" in str(err.value)
    tracker.set_state("E-1", "done")
    with pytest.raises(AgentsError, match="state 'done' is not active"):
        await d.retry("E-1")
    tracker.remove("E-1")
    with pytest.raises(AgentsError, match="no longer in the memory tracker"):
        await d.retry("E-1")
    assert len(backend.requests) == 3 and len(await d.status(all_runs=True)) == 1
    tracker.put(_issue("E-1"))  # back in todo: a person may dispatch it again
    assert await d.retry("E-1") == "agent:memory:E-1:2"


async def test_a_queued_run_shows_its_issue_not_its_run_id(app: tether.App, tmp_path: Path) -> None:
    d = Dispatcher(app, _config(tmp_path), tracker=MemoryTracker([_issue("Q-1")]))
    await d.tick()  # queued, not yet driven: the run has no state
    [row] = await d.status()
    assert (row.identifier, row.run_id, row.phase) == ("Q-1", "agent:memory:Q-1", "queued")


async def test_run_once_reports_a_failed_tick_or_run_as_not_ok(
    app: tether.App, tmp_path: Path
) -> None:
    tracker = MemoryTracker([_issue("F-1")])
    config = _config(tmp_path, "budget: {max_tokens: 1, on_exceed: fail}")
    backend = MockBackend([{"usage": {"input_tokens": 9}}] * 3)
    d = Dispatcher(app, config, tracker=tracker, backend=backend)
    tracker.fail_reads = 1  # the candidate fetch fails: nothing is dispatched
    down = await d.run_once()
    assert not down.ok and "fetching candidates" in down.errors[0] and down.failed == []
    spent = await d.run_once()  # the budget fails the run: a failure, not "ok"
    assert spent.errors == [] and spent.failed == ["agent:memory:F-1"] and not spent.ok
    assert (await app.aget_run("agent:memory:F-1")).status.value == "failed"
    assert (await d.run_once()).ok  # held until retry: nothing went wrong this time
    (row,) = await d.status(all_runs=True)  # as the run ended, with why
    assert (row.phase, row.status) == ("ended", "failed")
    assert row.reason is not None and "budget" in row.reason.lower()


async def test_run_once_reports_an_attempt_that_failed_as_not_ok(
    app: tether.App, tmp_path: Path
) -> None:
    """An agent that fails (one that cannot even start, say) parks its run on a retry
    timer, or for a person: the tick went wrong all the same."""
    backend = MockBackend([{"result": "failed", "message": "agent_not_found"}] * 3)
    d = Dispatcher(app, _config(tmp_path), tracker=MemoryTracker([_issue("F-2")]), backend=backend)
    report = await d.run_once()
    assert report.failed == ["agent:memory:F-2"] and not report.ok
    [row] = await d.status()
    assert (row.status, row.phase) == ("waiting", "retrying")
    assert (await d.run_once()).ok  # its retry is not due: nothing failed this time
    clock = app.clock
    assert isinstance(clock, tether.FakeClock)
    for seconds in (10, 20):  # then its retries fail too, the last one parks for a person
        clock.advance(seconds)
        assert (await d.run_once()).failed == ["agent:memory:F-2"]
    [row] = await d.status()
    assert row.phase == "waiting" and "retries exhausted" in (row.reason or "")


async def test_run_once_says_why_skipped_as_things_stand_after_driving(
    app: tether.App, tmp_path: Path
) -> None:
    asks = {"result": "input_required", "message": "which colour?"}
    backend = MockBackend([asks, asks])
    d = Dispatcher(app, _config(tmp_path), tracker=MemoryTracker([_issue("H-1")]), backend=backend)
    await d.run_once()
    await d.answer("H-1", "blue")  # queued to resume: at the next poll it is claimed
    report = await d.run_once()  # ... and by the end it waits for a person again
    assert report.skipped == {"H-1": "held: input_required"} and len(backend.requests) == 2


async def test_status_of_an_answered_or_due_run_shows_it_queued_not_still_waiting(
    app: tether.App, tmp_path: Path
) -> None:
    asks = {"result": "input_required", "message": "which colour?"}
    fails = {"result": "failed", "message": "tests fail"}
    backend = MockBackend({"Q-1": [asks], "Q-2": [fails]})
    tracker = MemoryTracker([_issue("Q-1"), _issue("Q-2")])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    await d.run_once()
    assert {r.identifier: r.phase for r in await d.status()} == {
        "Q-1": "waiting",
        "Q-2": "retrying",
    }
    await d.answer("Q-1", "blue")  # answered: queued to resume, no longer asking
    clock = app.clock
    assert isinstance(clock, tether.FakeClock)
    clock.advance(10)
    await app.afire_due_timers()  # Q-2's retry fell due: queued, no longer waiting
    rows = {r.identifier: r for r in await d.status()}
    for row in rows.values():
        assert (row.status, row.phase, row.question, row.due_at) == (
            "pending",
            "queued",
            None,
            None,
        )
    assert rows["Q-1"].reason is None
    view = await d.issue_report("Q-1")
    assert view is not None and (view["phase"], view["question"]) == ("queued", None)
    assert (await d.state_report())["counts"] == {"running": 2, "retrying": 0, "waiting": 0}


async def test_a_closed_issue_stops_its_agent_within_a_tick_and_loses_its_workspace(
    app: tether.App, tmp_path: Path
) -> None:
    tracker = MemoryTracker([_issue("D-1")])
    backend = MockBackend([{"block": 60}])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    await d.tick()
    [job] = await host.aclaim(1)
    driving = asyncio.ensure_future(host.ahandle_job(job))
    await eventually(lambda: len(backend.requests) == 1, timeout=60)
    tracker.set_state("D-1", "done")
    report = await d.tick()
    assert report.stopped == ["agent:memory:D-1"]
    await asyncio.wait_for(driving, 60)  # the agent was killed, not waited for
    assert (await app.aget_run("agent:memory:D-1")).status.value == "cancelled"
    assert not (tmp_path / "ws" / "D-1").exists()


async def test_a_terminal_issue_loses_its_workspace_while_it_waits_for_a_retry(
    app: tether.App, tmp_path: Path
) -> None:
    """before_run failed: the run waits for its retry, its workspace made but never
    recorded as the run's. The issue closed meanwhile: its workspace goes all the same."""
    text = _text(tmp_path, 1).replace('"echo run >> runs.txt"', '"exit 3"')
    config = parse_workflow(text, path=tmp_path / "WORKFLOW.md")
    tracker = MemoryTracker([_issue("W-1")])
    d = Dispatcher(app, config, tracker=tracker, backend=MockBackend([{}]))
    await d.run_once()
    [row] = await d.status()
    ws = tmp_path / "ws" / "W-1"
    assert row.phase == "retrying" and "before_run" in (row.reason or "") and ws.is_dir()
    tracker.set_state("W-1", "done")
    report = await d.tick()
    assert report.stopped == ["agent:memory:W-1"]
    assert not ws.exists()


async def test_a_terminal_issue_loses_its_workspace_while_its_next_run_is_queued(
    app: tether.App, tmp_path: Path
) -> None:
    """The issue came back (a second run queued, not yet driven) and was closed before
    that run started: the workspace its first run left goes."""
    tracker = MemoryTracker([_issue("W-2")])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=MockBackend([{}] * 3))
    await d.run_once()
    ws = tmp_path / "ws" / "W-2"
    assert tracker.issues["W-2"].state == "review" and ws.is_dir()  # kept after a run
    tracker.set_state("W-2", "todo")
    assert (await d.tick()).dispatched == ["W-2"]  # queued: agent:memory:W-2:2
    tracker.set_state("W-2", "done")
    report = await d.tick()
    assert report.stopped == ["agent:memory:W-2:2"]
    assert not ws.exists()


async def test_an_issue_with_a_nul_or_a_lone_surrogate_in_its_text_is_worked_on(
    app: tether.App, tmp_path: Path
) -> None:
    """Before: its run could not be stored ("contains a NUL character"), so the issue
    was never dispatched and every tick reported the same error, forever. Tracker text
    is the tracker's: such characters become U+FFFD."""
    issue = _issue("N-1", description="log:\x00\x00 end")
    issue = Issue(**{**issue.to_dict(), "title": "half an emoji \ud83d", "blocked_by": ()})
    backend = MockBackend([{}] * 3)
    d = Dispatcher(app, _config(tmp_path), tracker=MemoryTracker([issue]), backend=backend)
    report = await d.run_once()
    assert report.errors == [] and report.dispatched == ["N-1"]
    request = backend.requests[0]
    assert request.prompt == "Work on N-1: half an emoji \ufffd"
    assert request.issue["description"] == "log:\ufffd\ufffd end"


async def test_a_broken_workflow_md_blocks_new_dispatch_but_not_reconciliation(
    app: tether.App, tmp_path: Path
) -> None:
    """Symphony: a WORKFLOW.md that does not load blocks new dispatches until it is
    fixed; reconciliation goes on. Before: new issues were dispatched under the last
    good config while the file said something else (half-edited, say)."""
    path = tmp_path / "WORKFLOW.md"
    path.write_text(_text(tmp_path, 1))
    tracker = MemoryTracker([_issue("B-1")])
    d = Dispatcher(app, WorkflowWatcher(path), tracker=tracker, backend=MockBackend([{}]))
    assert (await d.tick()).dispatched == ["B-1"]  # queued
    path.write_text(_text(tmp_path, 1).replace("max_turns: 1", "max_turns: 0"))
    os.utime(path, (1, 1))
    tracker.set_state("B-1", "done")
    tracker.put(_issue("B-2"))
    report = await d.tick()
    assert report.stopped == ["agent:memory:B-1"]  # reconciled all the same
    assert report.dispatched == [] and "agent.max_turns" in report.skipped["B-2"]
    assert any("no new dispatch until it is fixed" in e for e in report.errors)
    path.write_text(_text(tmp_path, 1))
    os.utime(path, (2, 2))
    fixed = await d.tick()
    assert fixed.dispatched == ["B-2"] and fixed.errors == []


async def test_cleanup_respects_and_records_the_tracker_cooldown(
    app: tether.App, tmp_path: Path, github: FakeGitHub
) -> None:
    d = Dispatcher(app, github_workflow(github, tmp_path))
    github.rate_limit_next = reset_in(300)
    assert await d.cleanup() == []  # rate-limited: by age only, and a cooldown row
    assert await d.tracker_cooldown() is not None
    asked = len(github.requests)
    assert await d.cleanup() == [] and len(github.requests) == asked  # not asked again


async def test_cleanup_removes_terminal_workspaces_but_not_busy_ones(
    app: tether.App, tmp_path: Path
) -> None:
    tracker = MemoryTracker([_issue("E-1"), _issue("E-2")])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=MockBackend([{}] * 6))
    await d.run_once()
    tracker.set_state("E-1", "done")
    (tmp_path / "ws" / "stray").mkdir()
    assert await d.cleanup() == ["E-1"]
    assert (tmp_path / "ws" / "E-2").is_dir() and (tmp_path / "ws" / "stray").is_dir()


async def test_workspaces_under_an_earlier_root_are_removed_by_their_recorded_path(
    app: tether.App, tmp_path: Path
) -> None:
    """`workspace.root` changed after two runs recorded their workspaces; their issues
    become terminal: both are removed where they were made, in one tick."""
    path = tmp_path / "WORKFLOW.md"
    path.write_text(_text(tmp_path, 1))
    tracker = MemoryTracker([_issue("R-1"), _issue("R-2")])
    backend = MockBackend([{"result": "failed", "message": "tests fail"}] * 2)
    d = Dispatcher(app, path, tracker=tracker, backend=backend)
    await d.run_once()  # both fail: their runs wait for a retry, workspaces in ws/
    assert {r.phase for r in await d.status()} == {"retrying"}
    path.write_text(_text(tmp_path, 1).replace(str(tmp_path / "ws"), str(tmp_path / "ws-new")))
    tracker.set_state("R-1", "done")
    tracker.set_state("R-2", "done")
    report = await d.tick()
    assert report.errors == [] and len(report.stopped) == 2
    assert d.runner.workspaces().root == tmp_path / "ws-new"
    assert not (tmp_path / "ws" / "R-1").exists() and not (tmp_path / "ws" / "R-2").exists()


class _MovesRoot(MockBackend):
    """An agent during whose first turn an operator points `workspace.root` elsewhere
    (and a serving dispatcher's tick reloads WORKFLOW.md)."""

    def __init__(self, workflow: Path, tmp: Path) -> None:
        super().__init__([])
        self.workflow, self.tmp = workflow, tmp
        self.dispatcher: Dispatcher | None = None

    async def run_turn(self, request, on_event):  # type: ignore[no-untyped-def]
        if not self.requests:
            new = _text(self.tmp, 2).replace(str(self.tmp / "ws"), str(self.tmp / "ws-new"))
            self.workflow.write_text(new)
            assert self.dispatcher is not None and self.dispatcher.reload()
        return await super().run_turn(request, on_event)


async def test_a_root_changed_mid_attempt_leaves_the_attempt_in_its_workspace(
    app: tether.App, tmp_path: Path
) -> None:
    """A reload applies to the next attempt: the attempt in flight goes on in the
    workspace it started in (its continuation turn was refused as outside the new
    root, and the run failed)."""
    path = tmp_path / "WORKFLOW.md"
    path.write_text(_text(tmp_path, 2))
    tracker = MemoryTracker([_issue("M-1")])
    backend = _MovesRoot(path, tmp_path)
    d = backend.dispatcher = Dispatcher(app, path, tracker=tracker, backend=backend)
    report = await d.run_once()
    assert report.ok, report
    assert [r.workspace for r in backend.requests] == [(tmp_path / "ws" / "M-1").resolve()] * 2
    assert tracker.issues["M-1"].state == "review"


class _Closes(MockBackend):
    """An agent that closes its issue itself (moves it to the terminal state)."""

    def __init__(self, tracker: MemoryTracker, state: str = "done") -> None:
        super().__init__([])
        self.tracker, self.state = tracker, state

    async def run_turn(self, request, on_event):  # type: ignore[no-untyped-def]
        self.tracker.set_state(str(request.issue["id"]), self.state)
        return await super().run_turn(request, on_event)


@pytest.mark.parametrize(("max_turns", "state"), [(1, "done"), (3, "done"), (3, "backlog")])
async def test_an_issue_closed_or_moved_during_the_turn_is_not_handed_off(
    app: tether.App, tmp_path: Path, max_turns: int, state: str
) -> None:
    """The hand-off never re-opens an issue the agent (or a person) closed or moved
    out of the active states during its last turn: it is left where it is."""
    config = parse_workflow(_text(tmp_path, max_turns), path=tmp_path / "WORKFLOW.md")
    tracker = MemoryTracker([_issue("C-1")])
    backend = _Closes(tracker, state)
    d = Dispatcher(app, config, tracker=tracker, backend=backend)
    await d.run_once()
    assert tracker.issues["C-1"].state == state
    assert not [w for w in tracker.writes if w[0] == "move"]
    assert len(backend.requests) == 1  # no continuation turn on a closed issue


async def test_after_run_runs_when_before_run_fails(app: tether.App, tmp_path: Path) -> None:
    """Symphony: after_run follows every attempt once the workspace exists."""
    hooks = 'hooks: {before_run: "exit 7", after_run: "echo after >> ../after.txt"}'
    text = _text(tmp_path, 1).replace(
        'hooks: {after_create: "echo created > created.txt", before_run: "echo run >> runs.txt"}',
        hooks,
    )
    tracker = MemoryTracker([_issue("D-1")])
    d = Dispatcher(app, parse_workflow(text, path=tmp_path / "WORKFLOW.md"), tracker=tracker,
                   backend=MockBackend([]))  # fmt: skip
    await d.run_once()
    [row] = await d.status()
    assert row.reason is not None and "hook before_run exited 7" in row.reason
    assert (tmp_path / "ws" / "after.txt").read_text() == "after\n"


async def test_a_due_retry_sees_the_agents_running_beside_it(
    app: tether.App, tmp_path: Path
) -> None:
    """What a retry decides on (its `refresh` step) holds the states of the issues
    whose agents run now, its own aside, so the per-state cap holds for retries. A
    queued run holds no slot: counting it, a retry holding the queue's last slot
    would wait for a run that waits for that slot."""
    tracker = MemoryTracker([_issue("E-1"), _issue("E-2"), _issue("E-3")])
    tracker.set_state("E-2", "doing")
    backend = MockBackend([{"block": 60}])
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    await d.dispatch(tracker.issues["E-2"])
    [job] = await host.aclaim(1)
    driving = asyncio.ensure_future(host.ahandle_job(job))
    await eventually(lambda: len(backend.requests) == 1, timeout=60)  # E-2's agent works
    await d.dispatch(tracker.issues["E-3"])  # queued, not driven
    seen = await d.runner._refresh("E-1", "agent:memory:E-1")
    assert seen["issue"]["identifier"] == "E-1" and seen["busy"] == ["doing"]
    await app.acancel("agent:memory:E-2")
    await asyncio.wait_for(driving, 60)


# -- run_once on a default App (its inline_wait left at 5 s) -----------------------------


def _no_handoff(tmp: Path, lanes: int = 10) -> tether.agents.WorkflowFile:
    """An issue that stays active after each attempt: every attempt ends in a 1 s
    continuation retry (no hand-off state moves it on); `lanes` agents at once."""
    text = _text(tmp, 1).replace(", handoff_state: review", "")
    text = text.replace(
        "stall_timeout_ms: 0", f"stall_timeout_ms: 0, max_concurrent_agents: {lanes}"
    )
    return parse_workflow(text, path=tmp / "WORKFLOW.md")


async def test_run_once_on_a_default_app_returns_while_an_issue_stays_active(
    tmp_path: Path,
) -> None:
    """Before: the App waited each 1 s continuation out inline (inline_wait, 5 s by
    default), re-checked the issue, started the next attempt, and so on: run_once
    never returned. Now an issue run always parks on its timers: one attempt a call."""
    clock = tether.FakeClock()
    async with tether.App(f"sqlite:///{tmp_path}/t.db", clock=clock) as app:
        backend = MockBackend([{}] * 50)
        tracker = MemoryTracker([_issue("L-1")])
        d = Dispatcher(app, _no_handoff(tmp_path), tracker=tracker, backend=backend)
        for n in (1, 2, 3):  # a user's loop of run_once calls
            report = await asyncio.wait_for(d.run_once(), 30)
            assert report.ok and len(backend.requests) == n
            [row] = await d.status()
            # each continuation is attempt 1, as in Symphony (not a count of turns)
            assert (row.status, row.phase, row.attempt) == ("waiting", "retrying", 1)
            assert tracker.issues["L-1"].state == "todo"
            clock.advance(1)  # the continuation is due: the next call re-checks, works on


class _Slow(MockBackend):
    """Agents whose turn on issue `slow` takes `seconds` of the fake clock, counted
    from when the other issues' runs have parked (their turns ended meanwhile)."""

    def __init__(self, app: tether.App, slow: str, others: list[str], seconds: float) -> None:
        super().__init__([{}] * 10)
        self.app, self.slow, self.others, self.seconds = app, slow, others, seconds

    async def _others_parked(self) -> bool:
        runs = [await self.app.aget_run(f"agent:memory:{ident}") for ident in self.others]
        return all(run.status.value == "waiting" for run in runs)

    async def run_turn(self, request, on_event):  # type: ignore[no-untyped-def]
        if request.issue["identifier"] == self.slow:
            await eventually(self._others_parked, timeout=10)
            assert isinstance(self.app.clock, tether.FakeClock)
            self.app.clock.advance(self.seconds)
        return await super().run_turn(request, on_event)


async def test_run_once_leaves_a_retry_due_meanwhile_for_the_next_call(tmp_path: Path) -> None:
    """S-3's agent works 1.5 s; S-1's and S-2's continuations (1 s) fall due meanwhile.
    Before: run_once fired them and drove those runs again, whose own retries fell due
    during the next, and so on for good (`tether agents run --once` too)."""
    clock = tether.FakeClock()
    async with tether.App(f"sqlite:///{tmp_path}/t.db", clock=clock, inline_wait=0) as app:
        backend = _Slow(app, "S-3", ["S-1", "S-2"], 1.5)
        tracker = MemoryTracker([_issue("S-1"), _issue("S-2"), _issue("S-3")])
        d = Dispatcher(app, _no_handoff(tmp_path), tracker=tracker, backend=backend)
        report = await asyncio.wait_for(d.run_once(), 30)
        assert report.dispatched == ["S-1", "S-2", "S-3"] and len(backend.requests) == 3
        assert {r.phase for r in await d.status()} == {"retrying"}
        # the next call fires what is due as it starts (S-1's and S-2's, since 1 s;
        # S-3's at 2.5 s is not yet at 1.5 s)
        await asyncio.wait_for(d.run_once(), 30)
        assert sorted(r.issue["identifier"] for r in backend.requests[3:]) == ["S-1", "S-2"]


class _Meeting(MockBackend):
    """Agents whose turns end only once `size` of them are in a turn at the same time."""

    def __init__(self, size: int) -> None:
        super().__init__([{}] * size)
        self.met = asyncio.Barrier(size)

    async def run_turn(self, request, on_event):  # type: ignore[no-untyped-def]
        await asyncio.wait_for(self.met.wait(), 10)  # one at a time, the first waits alone
        return await super().run_turn(request, on_event)


@pytest.mark.parametrize("lanes", [2, 3])
async def test_run_once_drives_its_agents_side_by_side(tmp_path: Path, lanes: int) -> None:
    """Before: `run_once` (`tether agents run --once`) drove one run after another, so a
    tick of ten issues took ten agents' time; the first agent here waited alone for the
    others until its 10 s ran out. Up to `max_concurrent_agents` now work at once."""
    async with tether.App(f"sqlite:///{tmp_path}/t.db", clock=tether.FakeClock()) as app:
        backend = _Meeting(lanes)
        tracker = MemoryTracker([_issue(f"M-{n}") for n in range(lanes)])
        d = Dispatcher(app, _no_handoff(tmp_path, lanes), tracker=tracker, backend=backend)
        report = await asyncio.wait_for(d.run_once(), 30)
        assert report.ok and len(report.dispatched) == lanes == len(backend.requests)
        assert {r.phase for r in await d.status()} == {"retrying"}  # each attempt ended


async def test_an_ended_run_shows_how_and_when_it_ended_not_a_stale_state(
    app: tether.App, tmp_path: Path
) -> None:
    """Before: `status --all` and the issue view showed an ended run with the state its
    last attempt saw ("todo") though the issue was closed since (which is why its
    run was stopped). Now: no tracker state but one the run handed off to, and how
    and when the run ended."""
    clock = app.clock
    assert isinstance(clock, tether.FakeClock)
    tracker = MemoryTracker([_issue("X-1"), _issue("X-2")])
    backend = MockBackend({"X-1": [{"result": "failed", "message": "tests fail"}]})
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    await d.run_once()  # X-1 fails (waits for a retry), X-2 is handed off to review
    tracker.set_state("X-1", "done")
    assert (await d.tick()).stopped == ["agent:memory:X-1"]
    rows = {r.identifier: r for r in await d.status(all_runs=True)}
    closed, handed = rows["X-1"], rows["X-2"]
    assert (closed.phase, closed.status, closed.issue_state) == ("ended", "cancelled", None)
    assert closed.ended == "cancelled: issue terminal" and closed.due_at is None
    assert closed.ended_at is not None and closed.ended_at.startswith(str(clock.now().year))
    assert closed.why == "issue terminal"  # why it was cancelled, no stale retry time
    assert (handed.issue_state, handed.ended) == ("review", "completed: handed off to review")
    view = await d.issue_report("X-1")
    assert view is not None and view["state"] is None and view["phase"] == "ended"
    assert view["ended"] == "cancelled: issue terminal" and view["ended_at"] == closed.ended_at


async def test_two_runs_queued_past_a_states_cap_never_run_their_agents_at_once(
    app: tether.App, tmp_path: Path
) -> None:
    """Two runs of todo issues queued at once (as two dispatchers' ticks, or a tick and
    a person's retry, can), `todo` capped at 1: driven side by side, one agent works,
    the other run waits for the slot (no available orchestrator slots), not beside it."""
    text = _text(tmp_path, 1).replace(
        "stall_timeout_ms: 0}", "stall_timeout_ms: 0, max_concurrent_agents_by_state: {todo: 1}}"
    )
    config = parse_workflow(text, path=tmp_path / "WORKFLOW.md")
    tracker = MemoryTracker([_issue("T-1"), _issue("T-2")])
    backend = MockBackend([{"block": 60}, {"block": 60}])
    d = Dispatcher(app, config, tracker=tracker, backend=backend)
    for ident in ("T-1", "T-2"):
        await d.dispatch(tracker.issues[ident])  # past the tick's count
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    jobs = [*(await host.aclaim(1)), *(await host.aclaim(1))]
    assert len(jobs) == 2
    driving = [asyncio.ensure_future(host.ahandle_job(job)) for job in jobs]
    try:
        await eventually(lambda: len(backend.requests) == 1, timeout=60)
        # before: the second agent started beside the first, and neither drive ended
        await eventually(lambda: any(t.done() for t in driving), timeout=60)
        rows = {r.identifier: r for r in await d.status()}
        waiting = [r for r in rows.values() if r.phase == "retrying"]
        assert [r.reason for r in waiting] == ["no available orchestrator slots"]
        assert len(backend.requests) == 1  # never a second agent beside the first
    finally:
        for ident in ("T-1", "T-2"):
            await app.acancel(f"agent:memory:{ident}")
        await asyncio.wait_for(asyncio.gather(*driving, return_exceptions=True), 60)


async def test_an_issue_its_agent_moved_on_frees_the_slot_of_the_state_it_left(
    app: tether.App, tmp_path: Path
) -> None:
    """`todo` capped at 1: T-1's agent moves T-1 to in progress as it starts (Symphony's
    own workflow). Before: its run still counted in todo, the state its attempt began
    in, so T-2 waited its backoff (no available orchestrator slots) beside a free
    slot. Now the states are the tracker's: T-2's agent works beside T-1's."""
    text = (
        _text(tmp_path, 1)
        .replace("active_states: [todo]", "active_states: [todo, in progress]")
        .replace(
            "stall_timeout_ms: 0}",
            "stall_timeout_ms: 0, max_concurrent_agents_by_state: {todo: 1}}",
        )
    )
    config = parse_workflow(text, path=tmp_path / "WORKFLOW.md")
    tracker = MemoryTracker([_issue("T-1"), _issue("T-2")])
    backend = MockBackend([{"block": 60}, {"block": 60}])
    d = Dispatcher(app, config, tracker=tracker, backend=backend)
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    driving: list[asyncio.Future[object]] = []
    try:
        for ident in ("T-1", "T-2"):
            await d.dispatch(tracker.issues[ident])
            [job] = await host.aclaim(1)
            driving.append(asyncio.ensure_future(host.ahandle_job(job)))
            await eventually(lambda: len(backend.requests) == len(driving) or driving[-1].done())
            tracker.set_state(ident, "in progress")  # the agent took it on
        assert [r.issue["identifier"] for r in backend.requests] == ["T-1", "T-2"]
        assert {r.identifier: r.phase for r in await d.status()} == {
            "T-1": "running",
            "T-2": "running",
        }
    finally:
        for ident in ("T-1", "T-2"):
            await app.acancel(f"agent:memory:{ident}")
        await asyncio.wait_for(asyncio.gather(*driving, return_exceptions=True), 60)


async def test_a_failed_before_run_still_shows_the_workspace_it_left(
    app: tether.App, tmp_path: Path
) -> None:
    """Before: `status` showed no workspace for a run whose `before_run` failed, though
    the folder was made (and `after_run` ran in it) and the retry works there."""
    text = _text(tmp_path, 1).replace('before_run: "echo run >> runs.txt"', 'before_run: "exit 3"')
    config = parse_workflow(text, path=tmp_path / "WORKFLOW.md")
    d = Dispatcher(app, config, tracker=MemoryTracker([_issue("B-1")]), backend=MockBackend([]))
    assert not (await d.run_once()).ok
    [row] = await d.status()
    assert row.phase == "retrying" and "before_run exited 3" in (row.why or "")
    assert row.workspace == str(tmp_path / "ws" / "B-1") and (tmp_path / "ws" / "B-1").is_dir()


def _clone_run(db: Path, template: str, copies: int) -> None:
    """`copies` more rows like run `template` (ids `template-1`...), in one
    transaction: a database busy with other workflows' runs, made in a blink."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
        picked = ", ".join("? || '-' || n" if c == "id" else c for c in cols)
        conn.execute(
            f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < ?) "
            f"INSERT INTO runs ({', '.join(cols)}) SELECT {picked} FROM runs, seq WHERE id = ?",
            (copies, template, template),
        )


async def test_issue_runs_are_found_among_more_open_runs_than_a_page(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The dispatcher once read the newest 10,000 open runs of any workflow and kept
    its own: past that, its waiting issue dropped out of its state and its status."""
    clock = tether.FakeClock()
    async with tether.App(sqlite_url, clock=clock, inline_wait=5.0) as app:

        @app.workflow(name="other")
        async def other(wf: tether.Workflow) -> None:
            await wf.wait_for_signal("go")

        backend = MockBackend([{"result": "input_required", "message": "which colour?"}, {}])
        d = Dispatcher(
            app, _config(tmp_path), tracker=MemoryTracker([_issue("C-1")]), backend=backend
        )
        await d.run_once()
        clock.advance(1)
        await app.astart(other, workflow_id="busy")

        async def waiting() -> bool:
            return (await app.aget_run("busy")).status.value == "waiting"

        await eventually(waiting, timeout=60)
        _clone_run(Path(sqlite_url.removeprefix("sqlite:///")), "busy", 10_000)
        [row] = await d.status()
        assert row.identifier == "C-1" and row.phase == "waiting"
        assert [r.identifier for r in await d.status(all_runs=True)] == ["C-1"]
        await d.answer("C-1", "blue")
        await d.run_once()
        assert backend.requests[1].prompt == "blue"


async def test_run_once_returns_when_the_app_stops_and_leaves_the_runs_queued(
    database_url: str, tmp_path: Path
) -> None:
    """A signal drains the App: a run driven by `run_once` hands itself back at its next
    step. Before, the pass claimed that run's job again at once, in a loop that never
    ended; the process died holding the job, and a restarted dispatcher waited out its
    lease before the run went on."""
    tracker = MemoryTracker([_issue("S-1"), _issue("S-2")])
    async with tether.App(database_url, clock=tether.FakeClock()) as stopping:
        d = Dispatcher(stopping, _config(tmp_path), tracker=tracker, backend=MockBackend())
        stopping.drain()
        # a bound for a hang, not a measure of speed: the pass makes no step at all
        report = await asyncio.wait_for(d.run_once(), 60)
        assert report.dispatched == ["S-1", "S-2"] and report.ok
        jobs = await stopping.store.list_jobs()
        assert {j.status.value for j in jobs} == {"queued"}, jobs
    async with tether.App(database_url, clock=tether.FakeClock()) as restarted:
        backend = MockBackend()
        e = Dispatcher(restarted, _config(tmp_path), tracker=tracker, backend=backend)
        await e.run_once()  # takes both over at once, no lease to wait out
        assert {i.state for i in tracker.issues.values()} == {"review"}
        assert len(backend.requests) == 6  # three turns each, once


async def test_a_run_cancelled_by_a_person_holds_its_issue_until_retry(
    app: tether.App, tmp_path: Path
) -> None:
    """Before: `tether cancel <run>` (not `tether agents stop`) was followed at the next
    tick by a new run of the issue, its failures in a row forgotten. A run the tick
    itself cancelled (the issue left the active states) is dispatched again as before."""
    tracker = MemoryTracker([_issue("K-1"), _issue("K-2")])
    backend = MockBackend([{"result": "failed", "message": "tests fail"}] * 4)
    d = Dispatcher(app, _config(tmp_path), tracker=tracker, backend=backend)
    await d.run_once()
    await app.acancel("agent:memory:K-1")  # as `tether cancel agent:memory:K-1` does
    tracker.set_state("K-2", "review")
    report = await d.tick()
    assert report.stopped == ["agent:memory:K-2"] and report.dispatched == []
    assert "its run was cancelled" in report.skipped["K-1"]
    tracker.set_state("K-2", "todo")
    assert (await d.tick()).dispatched == ["K-2"]
    assert "K-1" in (await d.tick()).skipped
    assert await d.retry("K-1") == "agent:memory:K-1:2"


async def test_the_age_sweep_spares_the_workspace_of_an_issue_whose_run_is_queued(
    app: tether.App, tmp_path: Path
) -> None:
    """Before: a run queued for an issue that came back (rework after a review) has no
    workspace recorded yet, so the retention chore removed the issue's old workspace,
    and the work the earlier run left in it, just before the new run was to use it."""
    tracker = MemoryTracker([_issue("Q-1"), _issue("Q-2")])
    config = _config(tmp_path, "workspace: {root: %s, max_age_days: 1}" % (tmp_path / "ws"))
    d = Dispatcher(app, config, tracker=tracker, backend=MockBackend([{}] * 6))
    await d.run_once()
    old = time.time() - 5 * 86400  # the sweep reads the folders' own (real) times
    for ident in ("Q-1", "Q-2"):
        assert tracker.issues[ident].state == "review"
        os.utime(tmp_path / "ws" / ident, (old, old))
    tracker.set_state("Q-1", "todo")  # a reviewer sends it back: its next run queues
    assert (await d.tick()).dispatched == ["Q-1"]
    assert await d.cleanup() == ["Q-2"]  # old, and no run of its issue is open
    assert (tmp_path / "ws" / "Q-1").is_dir()


async def _closed_during_after_create(
    app: tether.App, tmp_path: Path, hook: str
) -> asyncio.Future[object]:
    """Issue H-1 dispatched with `hook` as its `after_create`, then closed while the hook
    runs (it touches ../started first): the driving of its job, stopped by the tick."""
    text = _text(tmp_path, 1).replace('"echo created > created.txt"', f'"{hook}"')
    config = parse_workflow(text, path=tmp_path / "WORKFLOW.md")
    tracker = MemoryTracker([_issue("H-1")])
    d = Dispatcher(app, config, tracker=tracker, backend=MockBackend([{}]))
    host = tether.worker.ServerlessHost(app, queues=("agents",))
    await d.tick()
    [job] = await host.aclaim(1)
    driving = asyncio.ensure_future(host.ahandle_job(job))
    await eventually(lambda: (tmp_path / "ws" / "started").exists(), timeout=60)
    tracker.set_state("H-1", "done")
    assert (await d.tick()).stopped == ["agent:memory:H-1"]
    return driving


async def test_an_issue_closed_during_after_create_loses_its_workspace(
    app: tether.App, tmp_path: Path
) -> None:
    """Before: the issue closed while its workspace's `after_create` ran (a long clone):
    the tick cancelled the run and left the removal to its driver, which only removed a
    workspace when cancelled during the turns; the folder stayed behind."""
    hook = "touch ../started; while [ ! -f ../go ]; do sleep 0.05; done; echo made > made.txt"
    driving = await _closed_during_after_create(app, tmp_path, hook)
    (tmp_path / "ws" / "go").touch()  # the hook ends
    await asyncio.wait_for(driving, 60)
    assert (await app.aget_run("agent:memory:H-1")).status.value == "cancelled"
    assert not (tmp_path / "ws" / "H-1").exists()


async def test_an_issue_closed_during_after_create_stops_the_hook(
    app: tether.App, tmp_path: Path
) -> None:
    """Before: the run cancelled under a long `after_create` (a clone) left the hook
    running until it ended by itself; one that never ended held the run's driver."""
    hook = "echo $$ > ../hook.pid; touch ../started; while true; do sleep 0.05; done"
    driving = await _closed_during_after_create(app, tmp_path, hook)
    await asyncio.wait_for(driving, 60)  # the hook never ends by itself
    assert (await app.aget_run("agent:memory:H-1")).status.value == "cancelled"
    assert not (tmp_path / "ws" / "H-1").exists()
    assert not alive(int((tmp_path / "ws" / "hook.pid").read_text()))
