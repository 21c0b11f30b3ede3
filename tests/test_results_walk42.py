"""`App.result` / `aresult`: what its timeout measures and says, what an ended run
answers, and a result read where its workflow is not registered.

- `timeout` is real seconds on every clock: a FakeClock times the run's timers,
  not the wait; past it, `TimeoutError` names what the run waits for and the call
  that ends that wait (it said "still waiting" and nothing more, and for a run of
  an in-memory App told to start `tether worker`, which cannot reach it).
- a FakeClock that stands still is judged in real seconds: on SQLite, which looks
  every 50 ms, five "looks" were a fifth of a second, and a test that moved the
  clock from another task after a little work got "nobody moved it".
- a script that did not register the workflow reads the recorded JSON, or the
  type it passes as `result_type=`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from pydantic import BaseModel

from tether import App, FakeClock, RunStatus, Workflow
from tether.errors import InvalidArgumentError, TetherError
from tether.testing import memory_app

GUARD = 60  # seconds: only so that a regression fails instead of hanging


@pytest.fixture
async def waiting(database_url: str, clock: FakeClock) -> AsyncIterator[App]:
    """An App on the FakeClock with runs parked on a signal ("s", with a one-hour
    timeout), an event ("e"), a child ("p", its child "c" on a signal) and a timer ("t")."""
    app = App(database_url, clock=clock)

    @app.workflow(name="on_signal")
    async def on_signal(wf: Workflow) -> str:
        return str(await wf.wait_for_signal("go", timeout=3600))

    @app.workflow(name="on_event")
    async def on_event(wf: Workflow) -> str:
        return str(await wf.wait_for_event("paid"))

    @app.workflow(name="parent")
    async def parent(wf: Workflow) -> str:
        return str(await wf.child(on_signal, workflow_id="c"))

    @app.workflow(name="napper")
    async def napper(wf: Workflow) -> str:
        await wf.sleep(600)
        return "woke"

    try:
        for fn, wid in ((on_signal, "s"), (on_event, "e"), (parent, "p"), (napper, "t")):
            assert (await app.arun(fn, workflow_id=wid)).status is RunStatus.WAITING
        yield app
    finally:
        await app.aclose()


async def _timed_out(app: App, workflow_id: str, timeout: float = 0.2) -> str:
    with pytest.raises(TimeoutError) as caught:
        await asyncio.wait_for(app.aresult(workflow_id, timeout=timeout), GUARD)
    return str(caught.value)


async def test_a_timeout_on_a_fake_clock_is_real_seconds_and_names_the_wait(
    waiting: App,
) -> None:
    message = await _timed_out(waiting, "s")
    assert message.startswith("run 's' is still waiting after 0.2s; it waits for signal 'go'")
    assert "send it with app.signal('s', 'go', payload)" in message
    assert "or its timeout, due in 3600s of this App's FakeClock" in message
    assert "pass_time(app, 3600)" in message and "tether worker" not in message
    assert "send it with app.send_event('paid', payload)" in await _timed_out(waiting, "e")
    assert "child run 'c' to end: app.result('c')" in await _timed_out(waiting, "p")
    await waiting.asignal("s", "go", "yes")  # what the hint said: the run ends
    assert (await waiting.aresult("s", timeout=GUARD)).value == "yes"


async def test_a_timer_of_a_still_fake_clock_times_out_before_it_is_refused(
    waiting: App,
) -> None:
    message = await _timed_out(waiting, "t", timeout=0.5)
    assert "it waits for a timer (due in 600s of this App's FakeClock" in message
    assert "pass_time(app, 600)" in message


async def test_a_test_that_moves_the_clock_after_some_work_gets_the_result(
    waiting: App, clock: FakeClock
) -> None:
    asking = asyncio.ensure_future(asyncio.wait_for(waiting.aresult("t"), GUARD))
    await asyncio.sleep(0.6)  # the test's own work before it moves the clock (not a sync)
    assert not asking.done()
    clock.advance(600)
    assert (await asking).value == "woke"


async def test_a_submitted_run_of_an_in_memory_app_is_not_sent_to_tether_worker() -> None:
    app = memory_app()

    @app.workflow(name="queued")
    async def queued(wf: Workflow) -> int:
        return 1

    try:
        await app.asubmit(queued, workflow_id="q1", queue="jobs")
        message = await _timed_out(app, "q1")
        assert "in-memory database: resume it here (app.resume('q1'))" in message
        assert "Worker(app, queues=['jobs'])" in message and "tether worker" not in message
    finally:
        await app.aclose()


class Failed(Exception):
    pass


async def test_a_failed_run_answers_its_recorded_error_and_raises_it_again(app: App) -> None:
    @app.workflow(name="failing")
    async def failing(wf: Workflow) -> int:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise Failed("outer") from exc

    with pytest.raises(Failed):
        await app.arun(failing, workflow_id="f")
    answer = await app.aresult("f", timeout=GUARD)
    error = answer.record.last_error
    assert (answer.status, answer.value) == (RunStatus.FAILED, None)
    assert error is not None and (error.type, error.message) == ("Failed", "outer")
    assert error.cause is not None and (error.cause.type, error.cause.message) == (
        "KeyError",
        "'inner'",
    )
    with pytest.raises(Failed, match="outer") as again:
        await app.arun(failing, workflow_id="f")
    assert isinstance(again.value.__cause__, KeyError)


_WRITER = """
    import sys
    from datetime import date
    from pydantic import BaseModel
    from tether import App, Workflow

    class Out(BaseModel):
        day: date
        n: int

    app = App(sys.argv[1])

    @app.workflow(name="typed")
    async def typed(wf: Workflow) -> Out:
        return Out(day=date(2026, 1, 2), n=3)

    app.run(typed, workflow_id="elsewhere")
    app.close()
"""


class Out(BaseModel):
    day: date
    n: int


async def test_a_result_of_a_workflow_not_registered_here_is_json_or_result_type(
    database_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(_WRITER))
    subprocess.run([sys.executable, str(script), database_url], check=True, timeout=GUARD)
    app = App(database_url)  # registers nothing
    try:
        assert (await app.aresult("elsewhere")).value == {"day": "2026-01-02", "n": 3}
        typed = await app.aresult("elsewhere", result_type=Out)
        assert typed.value == Out(day=date(2026, 1, 2), n=3)
        with pytest.raises(TetherError, match="pass a result_type= its recorded value fits"):
            await app.aresult("elsewhere", result_type=int)
        with pytest.raises(InvalidArgumentError, match="result_type declares the type"):
            await app.aresult("elsewhere", result_type=[int])
    finally:
        await app.aclose()
