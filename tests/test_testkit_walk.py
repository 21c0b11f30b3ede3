"""Mistakes a new user makes walking the README's "Testing your own workflows" and
"Interceptors" sections: each now fails at once saying what to change."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import tether
from tether import App, FakeClock, Proceed, StepCall, Workflow
from tether.testing import eventually, eventually_sync


class AsyncListener:
    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        return await proceed()

    async def on_event(self, workflow_id: str, type: str, message: Any, detail: Any) -> None:
        raise AssertionError("never called: a plain call of it only makes a coroutine")


class NoProceedParam:
    async def intercept(self, call: StepCall) -> Any:
        return 1


class NoCallParamRun:
    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        return await proceed()

    async def intercept_run(self, proceed: Proceed) -> Any:
        return await proceed()


class ShortListener(NoCallParamRun):
    async def intercept_run(self, call: Any, proceed: Proceed) -> Any:
        return await proceed()

    def on_event(self, workflow_id: str, type: str) -> None:
        pass


class ForgetsAwait:
    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        return proceed()  # the README's `return await proceed()`, its await left out


def test_an_async_on_event_is_refused_by_app(sqlite_url: str) -> None:
    """Before: `async def on_event` was accepted and called without an await, so it
    never ran and the events went unheard, with only a RuntimeWarning."""
    with pytest.raises(tether.InvalidArgumentError, match=r"on_event is an `async def`.*def on_"):
        App(sqlite_url, interceptors=[AsyncListener()])


@pytest.mark.parametrize(
    ("interceptor", "hook"),
    [
        (NoProceedParam(), "NoProceedParam.intercept"),
        (NoCallParamRun(), "NoCallParamRun.intercept_run"),
        (ShortListener(), "ShortListener.on_event"),
    ],
)
def test_a_hook_with_the_wrong_parameters_is_refused_by_app(
    sqlite_url: str, interceptor: Any, hook: str
) -> None:
    """Before: App() took it, and each step (or event) failed later with "takes 2
    positional arguments but 3 were given" from inside the chain."""
    with pytest.raises(tether.InvalidArgumentError, match=rf"{hook} cannot be called.*define"):
        App(sqlite_url, interceptors=[interceptor])


def test_one_interceptor_not_in_a_list_is_refused_naming_it(sqlite_url: str) -> None:
    """Before: "must be a list of StepInterceptor objects", not saying what came."""
    with pytest.raises(
        tether.InvalidArgumentError, match=r"got a ForgetsAwait.*\[ForgetsAwait\(\)\]"
    ):
        App(sqlite_url, interceptors=ForgetsAwait())  # type: ignore[arg-type]


def test_an_interceptor_that_forgets_the_await_fails_saying_so(sqlite_url: str) -> None:
    """Before: the attempt failed with NotSerializableError telling the user to declare
    the step's return type `-> coroutine`, and the step never ran."""
    ran: list[int] = []

    async def flow(wf: Workflow) -> int:
        return await wf.step("a", lambda: ran.append(1) or 1)

    app = App(sqlite_url, clock=FakeClock(), interceptors=[ForgetsAwait()])
    try:
        with pytest.raises(
            tether.InvalidArgumentError,
            match=r"ForgetsAwait.intercept returned.*step 'a'.*`return await proceed\(\)`",
        ):
            app.run(flow, workflow_id="w")
    finally:
        app.close()
    assert ran == []


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("sync", [False, True])
async def test_eventually_given_a_value_not_a_function_says_so(tether_app: App, sync: bool) -> None:
    """Before: `eventually(app.aget_run(id))` or `eventually(x == 1)` failed with a bare
    "'coroutine' object is not callable" TypeError (and a never-awaited warning)."""
    for given in (tether_app.aget_run("none"), 1 == 2):
        with pytest.raises(tether.InvalidArgumentError, match=r"needs a function.*lambda"):
            if sync:
                eventually_sync(given, timeout=1)  # type: ignore[arg-type]
            else:
                await eventually(given, timeout=1)  # type: ignore[arg-type]


def test_fake_clock_advances_by_a_timedelta(tether_clock: FakeClock) -> None:
    """Before: advance(timedelta(hours=1)) was refused, though pass_time and
    eventually take a timedelta for the same kind of span."""
    start = tether_clock.now()
    assert tether_clock.advance(timedelta(hours=1)) == start + timedelta(hours=1)


class ForgetsAwaitInRun:
    async def intercept(self, call: StepCall, proceed: Proceed) -> Any:
        return await proceed()

    async def intercept_run(self, call: Any, proceed: Proceed) -> Any:
        return proceed()  # its await left out


def test_an_intercept_run_that_forgets_the_await_fails_naming_it(sqlite_url: str) -> None:
    """Before: the run failed with "the result of workflow 'flow' cannot be stored as
    JSON ... Declare the return type (`-> coroutine`", blaming the workflow."""

    async def flow(wf: Workflow) -> int:
        return await wf.step("a", lambda: 1)

    app = App(sqlite_url, clock=FakeClock(), interceptors=[ForgetsAwaitInRun()])
    try:
        with pytest.raises(
            tether.InvalidArgumentError,
            match=r"ForgetsAwaitInRun.intercept_run returned proceed\(\) without awaiting.*"
            r"workflow '[^']*flow'.*`return await proceed\(\)`",
        ):
            app.run(flow, workflow_id="w")
    finally:
        app.close()
