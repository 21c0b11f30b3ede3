"""A recorded result that no longer fits the type the code declares now.

A run completed when its workflow returned `str`; the code now says `int`.
Reading that run back (`app.result`, `app.run` of the finished run), or a
parent replaying its wait on such a child, gets a `TetherError` naming the
run and the way out, as a step's recorded result does, not pydantic's bare
"1 validation error for int".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tether import App, FakeClock, RunStatus, Workflow
from tether.errors import TetherError

Flow = Callable[[Workflow], Awaitable[Any]]


def _returning_str(app: App) -> Flow:
    @app.workflow(name="answer")
    async def answer(wf: Workflow) -> str:
        return "x"

    return answer


def _returning_int(app: App) -> Flow:
    @app.workflow(name="answer")
    async def answer(wf: Workflow) -> int:
        return 1

    return answer


async def _refused(read: Awaitable[Any]) -> str:
    """The message of the `TetherError` that `read` raises."""
    with pytest.raises(TetherError) as caught:
        await read
    return str(caught.value)


async def test_a_finished_runs_result_that_no_longer_fits_names_the_run(
    database_url: str, clock: FakeClock
) -> None:
    before = App(database_url, clock=clock)
    assert (await before.arun(_returning_str(before), workflow_id="r1")).value == "x"
    await before.aclose()

    after = App(database_url, clock=clock)
    try:
        now_int = _returning_int(after)
        for message in [
            await _refused(after.aresult("r1")),
            await _refused(after.arun(now_int, workflow_id="r1")),
        ]:
            assert message.startswith(
                "run 'r1' recorded a result that does not fit its declared type now: "
            )
            assert "(got 'x')" in message
            assert "read it with the code that ran it" in message
            assert "declare on workflow 'answer' a return type the recorded value fits" in message
    finally:
        await after.aclose()


async def test_a_childs_output_that_no_longer_fits_names_the_child_and_parent(
    database_url: str, clock: FakeClock
) -> None:
    def build(app: App, child: Flow) -> Flow:
        @app.workflow(name="parent")
        async def parent(wf: Workflow) -> str:
            got = await wf.child(child, workflow_id="p-c")
            await wf.wait_for_signal("go")
            return repr(got)

        return parent

    before = App(database_url, clock=clock, inline_wait=0)
    first = await before.arun(build(before, _returning_str(before)), workflow_id="p")
    assert first.status is RunStatus.WAITING
    await before.aclose()

    after = App(database_url, clock=clock, inline_wait=0)
    try:
        parent = build(after, _returning_int(after))
        await after.asignal("p", "go")
        with pytest.raises(TetherError) as caught:
            await after.arun(parent, workflow_id="p")
        message = str(caught.value)
        assert message.startswith(
            "child run 'p-c' of run 'p' recorded a result that does not fit its declared type now: "
        )
        assert "resume run 'p' with the code that started it" in message
        assert "declare on workflow 'answer' a return type the recorded value fits" in message
    finally:
        await after.aclose()
