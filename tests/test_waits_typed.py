"""A wait that declares the type of its answer (``result_type=``) gets that type back,
the first time and on every replay; an answer that does not fit is refused in the run,
and what was sent stays recorded."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import BaseModel

from tether import App, FakeClock, RunStatus, WaitPayloadError, Workflow
from tether.errors import InvalidArgumentError


class Approval(BaseModel):
    approved: bool
    by: str


async def test_a_signal_comes_back_as_its_declared_type_first_and_on_replay(
    database_url: str, clock: FakeClock
) -> None:
    """Before, a wait gave back plain JSON only: a model sent came back a dict, and a
    date as its text."""
    seen: list[str] = []

    def declare(app: App) -> object:
        @app.workflow(name="typed")
        async def typed(wf: Workflow) -> str:
            ok = await wf.wait_for_signal("ok", result_type=Approval)
            when = await wf.wait_for_signal("when", result_type=date)
            seen.append(f"{type(ok).__name__}/{type(when).__name__}")
            return f"{ok.by} {when.isoformat()}"

        return typed

    first = App(database_url, clock=clock)
    try:
        await first.astart(declare(first), workflow_id="t1")
        await first.asettle(10)
        await first.asignal("t1", "ok", Approval(approved=True, by="ada"))
        await first.asettle(10)
    finally:
        await first.aclose()
    second = App(database_url, clock=clock)  # a new process replays the first wait
    try:
        declare(second)
        await second.asignal("t1", "when", "2026-12-06")
        result = await second.aresult("t1", timeout=30)
    finally:
        await second.aclose()
    assert result.value == "ada 2026-12-06"
    assert seen == ["Approval/date"]


async def test_an_answer_that_does_not_fit_raises_in_the_run_and_it_may_ask_again(
    app: App,
) -> None:
    """The run learns what was wrong and can wait again (a new wait of that name)."""
    problems: list[str] = []

    @app.workflow
    async def asks(wf: Workflow) -> bool:
        while True:
            try:
                answer = await wf.wait_for_signal("ok", result_type=Approval)
            except WaitPayloadError as exc:
                problems.append(str(exc))
                continue
            return answer.approved

    await app.astart(asks, workflow_id="asks")
    await app.asettle(10)
    await app.asignal("asks", "ok", {"aproved": True, "by": "ada"})
    await app.asettle(10)
    await app.asignal("asks", "ok", {"approved": True, "by": "ada"})
    assert (await app.aresult("asks", timeout=30)).value is True
    # each replay raised it again at the first wait: the same words each time
    assert problems and all(p == problems[0] for p in problems)
    assert "wait 'signal:ok#1' of run 'asks'" in problems[0]
    assert "not validate as Approval (approved: Field required" in problems[0]
    waits = await app.store.list_waits("asks")
    assert json.loads(waits[0].payload or "") == {"aproved": True, "by": "ada"}  # as sent


async def test_an_answer_that_does_not_fit_fails_a_run_that_does_not_catch_it(app: App) -> None:
    @app.workflow
    async def strict(wf: Workflow) -> int:
        return int(await wf.wait_for_event("count", result_type=int))

    await app.astart(strict, workflow_id="strict")
    await app.asettle(10)
    await app.asend_event("count", {"n": 3})
    result = await app.aresult("strict", timeout=30)
    assert result.record.status is RunStatus.FAILED
    error = result.record.last_error
    assert error is not None and error.type == "WaitPayloadError"
    assert "'event:count#1' of run 'strict'" in error.message
    assert "does not validate as int (value: Input should be a valid integer" in error.message


async def test_a_token_answer_is_typed_and_a_timeouts_default_is_returned_as_given(
    app: App, clock: FakeClock
) -> None:
    @app.workflow
    async def gated(wf: Workflow) -> list[object]:
        token = await wf.create_token()
        await wf.step("publish", lambda: token)
        got = await wf.wait_for_token(token, result_type=Approval)
        late = await wf.wait_for_signal("late", timeout=60, default="none", result_type=Approval)
        return [got.by, late]

    await app.astart(gated, workflow_id="gated")
    await app.asettle(10)
    steps = await app.store.load_steps("gated")
    token = next(s.result for s in steps if s.name == "publish").strip('"')
    await app.acomplete_token(token, {"approved": False, "by": "bob"})
    await app.asettle(10)
    clock.advance(61)
    assert (await app.aresult("gated", timeout=30)).value == ["bob", "none"]


async def test_a_type_no_payload_can_be_read_as_is_refused_before_the_wait(app: App) -> None:
    @app.workflow
    async def odd(wf: Workflow) -> None:
        await wf.wait_for_signal("x", result_type=[int])

    with pytest.raises(InvalidArgumentError, match=r"wait_for_signal\('x'\) declares the type"):
        await app.arun(odd, workflow_id="odd")
    assert await app.store.list_waits("odd") == []
