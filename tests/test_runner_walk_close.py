"""`app.close()` called from inside a step of that App is refused at once.

Closing waits for the steps in flight, so a step closing its own App waited for
itself the whole grace period, then handed its run back. It is refused with an
`InvalidArgumentError` saying what to do instead (raise or return, close after
the run); the run goes on, and the App still closes normally afterwards. A step
closing another App is not its own step: that App closes.
"""

from __future__ import annotations

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
