"""Step retries and timeouts walked as a new user would: what breaks at the edges."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import tether
from tether import (
    App,
    FakeClock,
    InvalidArgumentError,
    RetryPolicy,
    RunStatus,
    StepStatus,
    StepTimeoutError,
    Workflow,
)

from ._env import child_pythonpath
from ._killed import killed_once_marked

MAX_MESSAGE, MAX_TRACEBACK = 8_000_000, 16_000_000  # as tether._failure keeps them

# -- a step function raising KeyboardInterrupt / SystemExit -------------------------------

_EXITS = """
import sys, tether
app = tether.App(sys.argv[1])
calls = []

def sync_fn():
    calls.append(1)
    raise {exc}

async def async_fn():
    calls.append(1)
    raise {exc}

@app.workflow(name="exits")
async def flow(wf: tether.Workflow) -> str:
    return await wf.step("s", {fn}, retry=tether.RetryPolicy(attempts=3, backoff=0))

try:
    app.run(flow, workflow_id="w")
except BaseException as e:  # what app.run raised: the step's own exit
    print("raised", type(e).__name__, "calls", len(calls), flush=True)
    app.close()
    raise
"""


@pytest.mark.parametrize("exc", ["KeyboardInterrupt()", "SystemExit(3)"])
@pytest.mark.parametrize("fn", ["sync_fn", "async_fn"])
def test_a_step_raising_an_exit_neither_hangs_app_run_nor_is_retried(
    database_url: str, tmp_path: Path, exc: str, fn: str
) -> None:
    """Before, the exception ended the App's event loop under the run and app.run waited
    for good (the child never exited)."""
    script = tmp_path / "exits.py"
    script.write_text(_EXITS.format(exc=exc, fn=fn))
    env = {**os.environ, "PYTHONPATH": child_pythonpath()}
    done = subprocess.run(
        [sys.executable, str(script), database_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    name = exc.split("(")[0]
    assert f"raised {name} calls 1" in done.stdout, done.stdout + done.stderr
    # the script exits as its step asked: SystemExit(3) with 3, Ctrl-C's as by SIGINT
    assert done.returncode == (3 if name == "SystemExit" else -2), done.stderr
    assert "its attempt left interrupted" in done.stderr  # said, as the exit passes
    app = App(database_url)
    try:
        rec = app.get_record("w")
        step = rec.steps["s"]
        # left interrupted, as a crash leaves it: not a failure, not retried
        assert step.status is StepStatus.RUNNING and step.attempts == 1 and step.error is None
        assert [e.type for e in rec.events] == ["workflow.running", "step.started"]
    finally:
        app.close()


# -- exceptions that break as they are read ----------------------------------------------


class _RetryableBreaks(Exception):
    @property
    def retryable(self) -> bool:
        raise RuntimeError("retryable cannot be read")


class _ArgsBreak(Exception):
    @property  # type: ignore[override]
    def args(self) -> tuple[object, ...]:
        raise RuntimeError("args cannot be read")


class _RetryAfterBreaks(Exception):
    @property
    def retry_after(self) -> float:
        raise RuntimeError("retry_after cannot be read")


@pytest.mark.parametrize("cls", [_RetryableBreaks, _ArgsBreak, _RetryAfterBreaks])
async def test_an_error_that_breaks_as_it_is_read_is_still_recorded(
    app: App, cls: type[Exception]
) -> None:
    """Before, reading it raised while its failure was recorded: the step stayed
    `running` (or the run did) and the run failed with the RuntimeError instead."""

    def fails() -> None:
        raise cls("boom")

    @app.workflow(name=f"breaks-{cls.__name__}")
    async def flow(wf: Workflow) -> None:
        await wf.step("s", fails, retry=RetryPolicy(attempts=2, backoff=0))

    with pytest.raises(cls):
        await app.arun(flow, workflow_id="w")
    rec = await app.aget_record("w")
    step = rec.steps["s"]
    assert rec.status is RunStatus.FAILED and step.status is StepStatus.FAILED
    assert step.attempts == 2 and step.error is not None and step.error.type == cls.__name__
    assert rec.last_error is not None and rec.last_error.type == cls.__name__


# -- an error with a huge message --------------------------------------------------------


async def test_a_huge_error_message_is_capped_in_the_record_and_events(app: App) -> None:
    """Before, a 2 MB message was written whole into the message, the traceback and
    every retry's event."""

    def fails() -> None:
        raise ValueError("x" * (MAX_MESSAGE + 1_000))

    @app.workflow(name="huge")
    async def flow(wf: Workflow) -> None:
        await wf.step("s", fails, retry=RetryPolicy(attempts=2, backoff=0))

    with pytest.raises(ValueError):
        await app.arun(flow, workflow_id="w")
    rec = await app.aget_record("w")
    err = rec.steps["s"].error
    assert err is not None and err.traceback is not None
    assert MAX_MESSAGE < len(err.message) < MAX_MESSAGE + 100
    assert err.message.endswith("more characters cut]")
    assert len(err.traceback) < MAX_TRACEBACK + 100
    retrying = next(e for e in rec.events if e.type == "step.retrying")
    assert len(retrying.detail["error"]) < MAX_MESSAGE + 200


# -- retry policy values -----------------------------------------------------------------


def test_a_max_delay_shorter_than_the_backoff_is_refused_naming_the_fix() -> None:
    with pytest.raises(InvalidArgumentError, match=r"max_delay .* shorter than backoff"):
        RetryPolicy(attempts=3, backoff=10, max_delay=5)
    assert RetryPolicy(attempts=3, backoff=10, max_delay=10).delay(1) > 0


def test_a_backoff_longer_than_the_default_cap_is_waited_as_asked() -> None:
    """Before, RetryPolicy(backoff=3600) waited 30 s (the default max_delay), silently."""
    policy = RetryPolicy(attempts=3, backoff=3600, jitter=0)
    assert policy.delay(1) == 3600 and policy.delay(2) == 3600
    assert RetryPolicy(jitter=0).delay(10) == 30  # the default cap is kept otherwise


# -- an async step that ignores its cancellation -----------------------------------------


async def test_an_async_step_that_swallows_its_timeout_and_returns_late_times_out(
    app: App,
) -> None:
    """Before, its late result was recorded as the step's (a sync one's is discarded)."""
    attempts: list[int] = []

    async def stubborn() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            with contextlib.suppress(asyncio.CancelledError):  # ignored: returns anyway
                await asyncio.Event().wait()  # until the timeout cancels it
            return "late"
        return "in time"

    @app.workflow(name="stubborn")
    async def flow(wf: Workflow) -> str:
        return await wf.step("s", stubborn, timeout=0.05, retry=RetryPolicy(attempts=2, backoff=0))

    assert (await app.arun(flow, workflow_id="w")).value == "in time"
    rec = await app.aget_record("w")
    retrying = next(e for e in rec.events if e.type == "step.retrying")
    assert retrying.detail["error"].startswith(StepTimeoutError.__name__)
    assert rec.steps["s"].attempts == 2


# -- a process killed in a retry back-off ------------------------------------------------

_BACKS_OFF = """
import sys, tether
from pathlib import Path
app = tether.App(sys.argv[1])

def flaky() -> str:
    raise ConnectionError("the agent dropped the call")

@app.workflow(name="backs-off")
async def flow(wf: tether.Workflow) -> str:
    return await wf.step("call", flaky, retry=tether.RetryPolicy(3, 60, max_delay=60, jitter=0))

def on_event(wid, type_, message, detail):
    if type_ == "step.retrying":
        Path(sys.argv[2]).touch()  # in its minute of back-off: killed now

app.run(flow, workflow_id="w", on_event=on_event)
"""


async def test_a_process_killed_in_its_back_off_leaves_the_rest_to_wait_and_the_count(
    database_url: str, tmp_path: Path
) -> None:
    script, marker = tmp_path / "backs_off.py", tmp_path / "retrying"
    script.write_text(textwrap.dedent(_BACKS_OFF))
    await killed_once_marked(script, marker, database_url, str(marker))
    probe = App(database_url)
    try:
        rec = await probe.aget_record("w")
    finally:
        await probe.aclose()
    retrying = next(e for e in rec.events if e.type == "step.retrying")
    due = datetime.fromisoformat(retrying.detail["retry_at"])
    assert rec.steps["call"].attempts == 1
    clock = FakeClock(due - timedelta(seconds=40))  # the next process starts 20 s later
    app = App(database_url, clock=clock)
    calls: list[datetime] = []

    def flaky() -> str:
        calls.append(clock.now())
        return "ok"

    @app.workflow(name="backs-off")
    async def flow(wf: Workflow) -> str:
        return await wf.step("call", flaky, retry=RetryPolicy(3, 60, max_delay=60, jitter=0))

    try:
        assert (await app.arun(flow, workflow_id="w")).value == "ok"
        assert calls == [due] and clock.slept == [40.0]  # the rest of it, not at once
        assert (await app.aget_record("w")).steps["call"].attempts == 2  # counted on
    finally:
        await app.aclose()


async def test_arun_raises_step_exited_carrying_the_exit(app: App) -> None:
    """The async API cannot raise the exit itself inside the caller's task (asyncio
    stops its loop on one): it raises `tether.StepExited`, the exit as `.exit`."""

    def interrupted() -> None:
        raise KeyboardInterrupt

    @app.workflow(name="exits-async")
    async def flow(wf: Workflow) -> None:
        await wf.step("s", interrupted)

    with pytest.raises(tether.StepExited) as caught:
        await app.arun(flow, workflow_id="wa")
    assert isinstance(caught.value.exit, KeyboardInterrupt) and caught.value.step == "s"
    step = (await app.aget_record("wa")).steps["s"]
    assert step.status is StepStatus.RUNNING and step.error is None
