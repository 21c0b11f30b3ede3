"""A compensation is tried as often as `compensate_retry=` says, by default as often as
its step is: an undo that calls the same flaky service as its step met one failure and
left the run `compensation_failed` for good."""

from __future__ import annotations

import pytest

from tether import App, RetryPolicy, RunStatus, Workflow
from tether.errors import InvalidArgumentError


def _flaky(calls: list[str], failures: int) -> object:
    def refund(value: str) -> None:
        calls.append(value)
        if len(calls) <= failures:
            raise ConnectionError("refund service unavailable")

    return refund


async def test_compensate_retry_tries_the_undo_again(app: App) -> None:
    calls: list[str] = []

    @app.workflow
    async def order(wf: Workflow) -> None:
        await wf.step(
            "charge", lambda: "ch_1", compensate=_flaky(calls, 2),
            compensate_retry=RetryPolicy(attempts=3, backoff=0),
        )  # fmt: skip
        raise RuntimeError("declined")

    with pytest.raises(RuntimeError, match="declined"):
        await app.arun(order, workflow_id="o1")
    assert calls == ["ch_1"] * 3
    record = await app.aget_record("o1")
    assert record.status is RunStatus.COMPENSATED
    assert record.steps["compensate:charge"].attempts == 3


async def test_an_undo_is_tried_as_its_step_is_by_default(app: App) -> None:
    calls: list[str] = []

    @app.workflow
    async def order(wf: Workflow) -> None:
        retry = RetryPolicy(attempts=2, backoff=0)
        await wf.step("charge", lambda: "ch_2", retry=retry, compensate=_flaky(calls, 1))
        raise RuntimeError("declined")

    with pytest.raises(RuntimeError, match="declined"):
        await app.arun(order, workflow_id="o2")
    assert calls == ["ch_2", "ch_2"]
    assert (await app.aget_run("o2")).status is RunStatus.COMPENSATED


async def test_an_undo_that_fails_every_try_leaves_the_run_compensation_failed(app: App) -> None:
    calls: list[str] = []

    @app.workflow
    async def order(wf: Workflow) -> None:
        await wf.step("charge", lambda: "ch_3", compensate=_flaky(calls, 9), compensate_retry=2)
        raise RuntimeError("declined")

    with pytest.raises(RuntimeError, match="declined"):
        await app.arun(order, workflow_id="o3")
    assert calls == ["ch_3", "ch_3"]
    assert (await app.aget_run("o3")).status is RunStatus.COMPENSATION_FAILED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compensate_retry": 3}, "compensate_retry= but no compensate="),
        ({"compensate": print, "compensate_retry": 0}, "retry attempts must be an integer"),
    ],
)
async def test_a_compensate_retry_that_cannot_work_is_refused_before_the_step_runs(
    app: App, options: dict[str, object], message: str
) -> None:
    ran: list[int] = []

    @app.workflow
    async def order(wf: Workflow) -> None:
        await wf.step("charge", lambda: ran.append(1), **options)  # type: ignore[arg-type]

    with pytest.raises(InvalidArgumentError, match=message):
        await app.arun(order, workflow_id="o4")
    assert ran == []
