"""Interceptor mistakes a user makes when following the README fail `App()` with what to
change, instead of failing every step attempt later with a TypeError from the chain."""

from __future__ import annotations

from typing import Any

import pytest

import tether
from tether import App, FakeClock, Proceed, StepCall, Workflow
from tether.testing import pass_time


class Timing:
    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        return await proceed()


class SyncAnswer:
    def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        return "cached"  # not awaitable: the chain would fail with "can't be used in await"


class SyncRun(Timing):
    def intercept_run(self, call: Any, proceed: Proceed) -> Any:
        return proceed()


class EventFlag(Timing):
    on_event = True


def test_a_class_instead_of_an_instance_is_refused_saying_so(sqlite_url: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=r"is a class.*\[Timing\(\)\]"):
        App(sqlite_url, interceptors=[Timing])


@pytest.mark.parametrize(
    ("interceptor", "method"),
    [(SyncAnswer(), "SyncAnswer.intercept"), (SyncRun(), "SyncRun.intercept_run")],
    ids=["intercept", "intercept_run"],
)
def test_a_plain_def_hook_is_refused_saying_to_make_it_async(
    sqlite_url: str, interceptor: Any, method: str
) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=rf"{method} is a plain `def`.*async def"):
        App(sqlite_url, interceptors=[interceptor])


def test_an_on_event_that_is_no_method_is_refused(sqlite_url: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=r"EventFlag.on_event is True"):
        App(sqlite_url, interceptors=[EventFlag()])


async def test_the_readme_interceptors_still_run_and_replay_is_not_intercepted(
    sqlite_url: str,
) -> None:
    """Outermost first, sync and async steps alike, a replayed step not intercepted."""
    log: list[tuple[str, str, int]] = []

    class Log:
        def __init__(self, label: str) -> None:
            self.label = label

        async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
            log.append((self.label, call.key, call.attempt))
            return await proceed()

    clock = FakeClock()
    app = App(sqlite_url, clock=clock, interceptors=[Log("outer"), Log("inner")])

    async def two() -> int:
        return 2

    @app.workflow
    async def flow(wf: Workflow) -> int:
        one = await wf.step("sync", lambda: 1)
        await wf.sleep(60)
        return one + await wf.step("async", two)

    try:
        assert (await app.arun(flow, workflow_id="w")).status is tether.RunStatus.WAITING
        assert await pass_time(app, 60) == ["w"]
        assert (await app.aresult("w")).value == 3
    finally:
        await app.aclose()
    assert log == [
        ("outer", "sync", 1),
        ("inner", "sync", 1),
        ("outer", "async", 1),
        ("inner", "async", 1),
    ]
