"""A step's arguments that can only go wrong later are found out when it is called,
and a retry policy's own bug does not leave the step half-recorded."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import tether
from tether import App, RetryPolicy, StepStatus, Workflow


async def test_a_compensation_taking_too_many_arguments_is_refused_when_its_step_is_called(
    app: App,
) -> None:
    calls: list[str] = []

    def refund(order: str, amount: int, reason: str) -> None:  # one more than it is given
        calls.append("refund")

    async def flow(wf: Workflow) -> str:
        with pytest.raises(tether.InvalidArgumentError, match=r"refund' of step 'charge' takes 3"):
            await wf.step("charge", lambda: calls.append("charge"), compensate=refund)
        return "fixed"

    # refused before the charge: found out only when the run failed, it left the charge
    # recorded and never undone, and the run `compensation_failed`
    assert (await app.arun(flow, workflow_id="comp-1")).value == "fixed"
    assert calls == []


async def test_a_should_retry_that_raises_fails_the_step_with_its_own_error(app: App) -> None:
    attempts: list[int] = []

    def flaky() -> int:
        attempts.append(1)
        raise ZeroDivisionError("division by zero")

    def should_retry(exc: BaseException) -> bool:
        raise KeyError("a bug of the predicate")

    policy = RetryPolicy(attempts=3, backoff=0, should_retry=should_retry)

    @app.workflow(name="flaky")
    async def flow(wf: Workflow) -> int:
        return await wf.step("divide", flaky, retry=policy)

    for _ in range(2):  # the first run, then the failed run's answer: the same error
        with pytest.raises(ZeroDivisionError):
            await app.arun(flow, workflow_id="retry-1")
    record = await app.aget_record("retry-1")
    step = record.steps["divide"]
    assert (step.status, step.attempts, attempts) == (StepStatus.FAILED, 1, [1])
    assert record.last_error is not None and record.last_error.type == "ZeroDivisionError"
    assert "should_retry raised KeyError" in (record.last_error.traceback or "")


async def test_a_replayed_os_error_keeps_its_errno_and_filename(app: App, tmp_path: Path) -> None:
    missing = tmp_path / "gone.txt"

    @app.workflow(name="read")
    async def flow(wf: Workflow) -> str:
        return await wf.step("read", missing.read_text)

    seen = []
    for _ in range(2):  # the first run, then the failed run's answer
        with pytest.raises(FileNotFoundError) as caught:
            await app.arun(flow, workflow_id="read-1")
        err = caught.value
        seen.append((err.errno, err.strerror, err.filename, str(err)))
    # a replay had errno None and read "(2, 'No such file or directory')": an `except`
    # testing `err.errno == errno.ENOENT` went another way the second time
    assert (
        seen[1]
        == seen[0]
        == (
            errno.ENOENT,
            os.strerror(errno.ENOENT),
            str(missing),
            f"[Errno {errno.ENOENT}] {os.strerror(errno.ENOENT)}: {str(missing)!r}",
        )
    )
