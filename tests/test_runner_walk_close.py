"""`app.close()` called from inside a step of that App is refused at once.

Closing waits for the steps in flight, so a step closing its own App waited for
itself the whole grace period, then handed its run back. It is refused with an
`InvalidArgumentError` saying what to do instead (raise or return, close after
the run); the run goes on, and the App still closes normally afterwards. A step
closing another App is not its own step: that App closes. So is a close from the
workflow body, a compensation, or an `on_event` listener the drive calls (or a task
it started): each would hand the run back with nothing left to drive it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.errors import InvalidArgumentError

Flow = Callable[[Workflow], Awaitable[Any]]
REFUSED = "app.close() was called from inside a step of this App"


def _closing_in_steps(app: App, refusals: list[str]) -> Flow:
    """A workflow whose steps close `app`: sync (a step thread), async `aclose`, and
    the sync `close` from an async step (on the App's loop); each notes the refusal."""

    def sync_step() -> str:
        with pytest.raises(InvalidArgumentError) as caught:
            app.close()
        refusals.append(str(caught.value))
        return "sync"

    async def async_step() -> str:
        with pytest.raises(InvalidArgumentError) as caught:
            await app.aclose()
        refusals.append(str(caught.value))
        return "async"

    async def sync_close_on_the_loop() -> str:
        with pytest.raises(InvalidArgumentError) as caught:
            app.close()
        refusals.append(str(caught.value))
        return "loop"

    @app.workflow(name="closer")
    async def closer(wf: Workflow) -> str:
        a = await wf.step("sync", sync_step)
        b = await wf.step("async", async_step)
        c = await wf.step("loop", sync_close_on_the_loop)
        return f"{a} {b} {c}"

    return closer


def _check(refusals: list[str]) -> None:
    assert len(refusals) == 3
    for message in refusals:
        assert message.startswith(REFUSED)
        assert "raise an exception (or return)" in message
        assert "close the App after the run" in message


def test_close_from_a_step_of_the_sync_facade_is_refused(
    database_url: str, clock: FakeClock
) -> None:
    app = App(database_url, clock=clock, shutdown_grace=1)
    refusals: list[str] = []
    try:
        result = app.run(_closing_in_steps(app, refusals), workflow_id="c1")
        assert (result.status, result.value) == (RunStatus.COMPLETED, "sync async loop")
        _check(refusals)
    finally:
        app.close()


async def test_close_from_a_step_of_the_async_api_is_refused(
    database_url: str, clock: FakeClock
) -> None:
    app = App(database_url, clock=clock, shutdown_grace=1)
    refusals: list[str] = []
    try:
        result = await app.arun(_closing_in_steps(app, refusals), workflow_id="c1")
        assert (result.status, result.value) == (RunStatus.COMPLETED, "sync async loop")
        _check(refusals)
    finally:
        await app.aclose()


async def test_a_step_may_close_another_app(database_url: str, clock: FakeClock) -> None:
    app = App(database_url, clock=clock)
    other = App(database_url, clock=clock)

    async def close_other() -> str:
        await other.aclose()
        return "closed"

    @app.workflow(name="other_closer")
    async def other_closer(wf: Workflow) -> str:
        return await wf.step("close", close_other)

    try:
        result = await app.arun(other_closer, workflow_id="o1")
        assert result.value == "closed"  # another App's close is not refused
    finally:
        await app.aclose()


BODY_REFUSED = "app.close() was called from the workflow code of a run this App is driving"


async def _still_usable(app: App) -> None:
    """The refused close left the App whole: it runs a workflow, then its owner closes it."""

    @app.workflow(name="after")
    async def after(wf: Workflow) -> str:
        return await wf.step("s", lambda: "ok")

    assert (await app.arun(after, workflow_id="after1")).value == "ok"
    await app.aclose()


async def test_close_from_the_workflow_body_is_refused(database_url: str, clock: FakeClock) -> None:
    """It closed the App under its own run: the run was handed back `pending` with
    nothing to drive it, `arun` answered that, and the App was left half closed."""
    app = App(database_url, clock=clock, shutdown_grace=1)

    @app.workflow(name="body_closer")
    async def body_closer(wf: Workflow) -> str:
        await wf.step("before", lambda: "kept")
        await app.aclose()
        return await wf.step("after", lambda: "never")

    try:
        with pytest.raises(InvalidArgumentError, match="workflow code") as caught:
            await app.arun(body_closer, workflow_id="b1")
        message = str(caught.value)
        assert message.startswith(BODY_REFUSED)
        assert "once app.run(...) has returned, from the code that created the App" in message
        record = await app.aget_record("b1")
        assert record.status is RunStatus.FAILED  # as a step raising it would
        assert record.last_error is not None and record.last_error.message == message
        assert record.steps["before"].status.value == "completed"  # nothing recorded lost
        assert "after" not in record.steps
    finally:
        await _still_usable(app)


def test_sync_close_from_the_workflow_body_is_refused(database_url: str, clock: FakeClock) -> None:
    """The sync `close` from the body (on the App's own loop) said only that an event
    loop was running there; now it says what was wrong and how to close instead."""
    app = App(database_url, clock=clock, shutdown_grace=1)

    @app.workflow(name="sync_body_closer")
    async def sync_body_closer(wf: Workflow) -> str:
        app.close()
        return "never"

    try:
        with pytest.raises(InvalidArgumentError, match="workflow code"):
            app.run(sync_body_closer, workflow_id="s1")
        assert app.get_record("s1").status is RunStatus.FAILED
    finally:
        app.close()
    assert app.draining  # its owner's close went through


async def test_close_from_a_compensation_of_a_cancelled_run_is_refused(
    database_url: str, clock: FakeClock
) -> None:
    """A run cancelled with compensate=True replays outside the drive that marks its
    code as this App's: its compensation closed the App under itself."""
    app = App(database_url, clock=clock, shutdown_grace=1)
    refusals: list[str] = []

    async def undo() -> None:
        try:
            await app.aclose()
        except InvalidArgumentError as exc:
            refusals.append(str(exc))
            raise

    @app.workflow(name="undo_closer")
    async def undo_closer(wf: Workflow) -> str:
        await wf.step("booked", lambda: "b", compensate=undo)
        return str(await wf.wait_for_signal("go"))

    try:
        assert (await app.arun(undo_closer, workflow_id="u1")).status is RunStatus.WAITING
        await app.acancel("u1", compensate=True)
        result = await app.aresult("u1", timeout=60)  # a guard only
        assert result.status is RunStatus.COMPENSATION_FAILED
        assert len(refusals) == 1 and refusals[0].startswith(REFUSED)
        assert result.record.steps["booked"].status.value == "completed"
    finally:
        await _still_usable(app)


LISTENER_REFUSED = "app.close() was called from an on_event listener of a run this App is driving"


def _check_listener_refusal(message: str) -> None:
    assert message.startswith(LISTENER_REFUSED)
    assert "once app.run(...) has returned, from the code that created the App" in message


async def test_aclose_started_by_a_listener_as_the_run_starts_is_refused(
    database_url: str, clock: FakeClock
) -> None:
    """`workflow.running` is told before the body runs: an `aclose` its listener started
    drained the App under the run, which was handed back `pending`, nothing driving it."""
    app = App(database_url, clock=clock, shutdown_grace=1)
    closing: list[asyncio.Task[None]] = []

    def listener(workflow_id: str, type_: str, message: str | None, detail: object) -> None:
        if type_ == "workflow.running" and not closing:
            closing.append(asyncio.get_running_loop().create_task(app.aclose()))

    async def meet_the_close() -> str:  # the close runs while this step is in flight
        await asyncio.wait(closing)  # (not cancelling it if the close cancels this step)
        return str(closing[0].exception())

    @app.workflow(name="listened")
    async def listened(wf: Workflow) -> str:
        refusal = await wf.step("meet", meet_the_close)
        return await wf.step("after", lambda: refusal)

    try:
        result = await app.arun(listened, workflow_id="l1", on_event=listener)
        assert result.status is RunStatus.COMPLETED  # the run went on, not handed back
        _check_listener_refusal(result.value)
        assert "A listener cannot stop the run" in result.value
        assert not app.draining
    finally:
        await _still_usable(app)


async def test_aclose_started_by_a_listener_of_a_parked_run_is_refused(
    database_url: str, clock: FakeClock
) -> None:
    """Told `workflow.waiting`, the run is parked but still driven; the refused close
    leaves it waiting and resumable. Called after the run's drive, the same listener
    closes the App."""
    app = App(database_url, clock=clock, shutdown_grace=1)
    closing: list[asyncio.Task[None]] = []

    def listener(workflow_id: str, type_: str, message: str | None, detail: object) -> None:
        if type_ == "workflow.waiting":
            closing.append(asyncio.get_running_loop().create_task(app.aclose()))

    @app.workflow(name="parked")
    async def parked(wf: Workflow) -> str:
        await wf.step("before", lambda: "kept")
        return str(await wf.wait_for_signal("go"))

    result = await app.arun(parked, workflow_id="p1", on_event=listener)
    assert result.status is RunStatus.WAITING
    with pytest.raises(InvalidArgumentError) as caught:
        await closing.pop()
    _check_listener_refusal(str(caught.value))
    assert not app.draining
    await app.asignal("p1", "go", "went")
    assert (await app.aresume("p1")).value == "went"  # the run was not lost
    listener("p1", "workflow.waiting", None, None)  # outside any drive: it closes
    await closing.pop()
    assert app.draining


def test_sync_close_from_a_listener_is_refused(database_url: str, clock: FakeClock) -> None:
    """The sync `close` from a listener (on the App's own loop) said only that an event
    loop was running there; now it says what was wrong and how to close instead."""
    app = App(database_url, clock=clock, shutdown_grace=1)
    outcomes: list[str] = []

    def listener(workflow_id: str, type_: str, message: str | None, detail: object) -> None:
        if type_ in ("step.completed", "workflow.waiting"):
            try:
                app.close()
                outcomes.append("closed")
            except InvalidArgumentError as exc:
                outcomes.append(str(exc))

    @app.workflow(name="sync_parked")
    async def sync_parked(wf: Workflow) -> str:
        await wf.step("before", lambda: "kept")
        return str(await wf.wait_for_signal("go"))

    try:
        assert app.run(sync_parked, workflow_id="s1", on_event=listener).status is (
            RunStatus.WAITING
        )
        assert len(outcomes) == 2
        for message in outcomes:
            _check_listener_refusal(message)
        app.signal("s1", "go", "went")
        assert app.resume("s1").value == "went"
        listener("s1", "workflow.waiting", None, None)  # after the run: it closes
        assert outcomes[-1] == "closed" and app.draining
    finally:
        app.close()
