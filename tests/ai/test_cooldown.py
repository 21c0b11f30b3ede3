"""A provider's cooldown, shared: once one call meets a rate limit that says until
when, the other calls of the process wait until then instead of each burning a
call on its own 429; other processes learn it from the database at their own first
429. Against the real local provider server, on both backends, on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tether import App, FakeClock, RunNotFoundError, Workflow, ai
from tether.testing import eventually

from ._server import ProviderServer

MODEL = "openai:gpt-4.1-mini"
PATH = "POST /v1/chat/completions"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _app(database_url: str, clock: FakeClock, server: ProviderServer) -> App:
    openai = ai.OpenAI(api_key="k", base_url=server.openai_url, timeout=5)
    return App(database_url, clock=clock, ai=ai.Providers(openai=openai))


@pytest.fixture
async def app(database_url: str, clock: FakeClock, server: ProviderServer) -> AsyncIterator[App]:
    the_app = _app(database_url, clock, server)
    yield the_app
    await the_app.aclose()


def _fan(app: App, n: int, *, stop_on_error: bool = True) -> object:
    @app.workflow(name=f"fan{n}")
    async def fan(wf: Workflow) -> list[str | None]:
        async def one(i: int) -> str:
            return (await wf.ai.generate_text(MODEL, prompt=f"item {i}")).text

        summary = await wf.for_each(range(n), one, max_parallel=n, stop_on_error=stop_on_error)
        return [r.value for r in summary.results]

    return fan


async def _started(app: App, run_id: str, n: int) -> bool:
    try:
        steps = (await app.aget_record(run_id)).steps
    except RunNotFoundError:
        return False  # not created yet
    return len([s for s in steps.values() if s.name.startswith("ai.text")]) == n


def _ask(app: App) -> object:
    @app.workflow(name="ask")
    async def ask(wf: Workflow) -> str:
        return (await wf.ai.generate_text(MODEL, prompt="hi")).text

    return ask


async def test_a_fan_out_spends_one_call_on_a_rate_limit_and_waits_out_its_cooldown(
    app: App, server: ProviderServer, clock: FakeClock
) -> None:
    server.fail_next(429, retry_after="30", hold=True)
    run = asyncio.create_task(app.arun(_fan(app, 5), workflow_id="f1"))  # type: ignore[arg-type]
    await eventually(lambda: _started(app, "f1", 5))  # every branch's call is under way
    server.held.set()  # only then is the first request refused
    done = await run
    assert done.value == [f"echo: item {i}" for i in range(5)]
    calls = await app.alist_ai_calls("f1")
    # the first wave: one request, the 429; the others waited until its cooldown ended
    before = [c for c in calls if c.at < T0 + timedelta(seconds=30)]
    assert len(before) == 1 and "429" in (before[0].error or "")
    answered = [c for c in calls if c.error is None]
    assert len(answered) == 5 and all(c.at >= T0 + timedelta(seconds=30) for c in answered)
    assert server.count(PATH) == 6
    # every wait on the App's clock is the 30 s asked for: the back-off of the call that
    # met the 429 and the cooldown's (unless that back-off had ended it first)
    assert set(clock.slept) == {30.0}
    # waiting is no attempt: only the call that met the 429 was attempted twice
    steps = (await app.aget_record("f1")).steps
    assert sorted(s.attempts for s in steps.values() if s.name.startswith("ai.text")) == [
        1,
        1,
        1,
        1,
        2,
    ]


async def test_an_overloaded_529_with_retry_after_sets_the_cooldown_too(
    database_url: str, server: ProviderServer
) -> None:
    """Anthropic's 529 overloaded, with a retry-after, met by one App's call: the calls
    another App of the process (sharing the providers) fans out meanwhile wait it out."""
    claude = ai.Anthropic(api_key="k", base_url=server.anthropic_url, timeout=5)
    providers = ai.Providers(anthropic=claude)
    clock_a, clock_b = FakeClock(T0), FakeClock(T0)
    first = App(database_url, clock=clock_a, ai=providers)
    other = App(database_url, clock=clock_b, ai=providers)
    model = "anthropic:claude-sonnet-4-5"

    async def ask(wf: Workflow, i: int) -> str:
        return (await wf.ai.generate_text(model, prompt=str(i))).text

    @other.workflow(name="fan")
    async def fan(wf: Workflow) -> list[str | None]:
        summary = await wf.for_each(range(3), lambda i: ask(wf, i), max_parallel=3)
        return [r.value for r in summary.results]

    @first.workflow(name="one")
    async def one(wf: Workflow) -> str:
        return await ask(wf, 0)

    try:
        server.fail_next(529, retry_after="20")
        assert (await first.arun(one, workflow_id="o1")).value == "echo"
        assert (await other.arun(fan, workflow_id="o2")).value == ["echo"] * 3
        calls = await other.alist_ai_calls("o2")
        assert [c.at for c in calls] == [T0 + timedelta(seconds=20)] * 3
        # each call found the cooldown and waited it out, or found it over: 20 s passed
        assert set(clock_b.slept) == {20.0}
        assert clock_b.now() == T0 + timedelta(seconds=20)
        assert server.count("POST /v1/messages") == 5
    finally:
        await first.aclose()
        await other.aclose()


async def test_another_process_takes_the_later_cooldown_from_the_database_at_its_429(
    database_url: str, server: ProviderServer
) -> None:
    clock_a, clock_b = FakeClock(T0), FakeClock(T0)
    first, other = _app(database_url, clock_a, server), _app(database_url, clock_b, server)
    try:
        server.fail_next(429, retry_after="600")
        assert (await first.arun(_ask(first), workflow_id="a1")).value == "echo: hi"  # type: ignore[arg-type]
        # the other App learns nothing before its own 429, which asks for 5 s only
        server.fail_next(429, retry_after="5")
        assert (await other.arun(_ask(other), workflow_id="b1")).value == "echo: hi"  # type: ignore[arg-type]
        assert clock_b.slept == [600.0]  # the database's later end, not its own 5 s
        calls = await other.alist_ai_calls("b1")
        assert [c.error is None for c in calls] == [False, True]
        assert calls[1].at == T0 + timedelta(seconds=600)
        assert server.count(PATH) == 4  # one call each spent on the limit
        # recorded as a lock that expires when the cooldown ends
        row = await first.store.get_lock("ai.cooldown", "openai")
        assert row is not None and row.expires_at == T0 + timedelta(seconds=600)
    finally:
        await first.aclose()
        await other.aclose()


async def test_a_cooldown_waits_no_longer_than_the_steps_own_back_off_would(
    database_url: str, server: ProviderServer
) -> None:
    """A retry-after of two hours: the step that met it waits an hour (the most a step
    waits for one), and so does a call of another App of the process (sharing the
    providers, so the cooldown) that starts meanwhile: no longer."""
    openai = ai.OpenAI(api_key="k", base_url=server.openai_url, timeout=5)
    providers = ai.Providers(openai=openai)
    clock_a, clock_b = FakeClock(T0), FakeClock(T0)
    first = App(database_url, clock=clock_a, ai=providers)
    other = App(database_url, clock=clock_b, ai=providers)
    try:
        server.fail_next(429, retry_after="7200")
        assert (await first.arun(_ask(first), workflow_id="w1")).value == "echo: hi"  # type: ignore[arg-type]
        assert clock_a.slept == [3600.0]  # the step's own back-off
        # the other App's call, at T0 on its clock, waits the cooldown out, then calls
        assert (await other.arun(_ask(other), workflow_id="w2")).value == "echo: hi"  # type: ignore[arg-type]
        assert clock_b.slept == [3600.0]
        [call] = await other.alist_ai_calls("w2")
        assert call.error is None and call.at == T0 + timedelta(seconds=3600)
        assert server.count(PATH) == 3
    finally:
        await first.aclose()
        await other.aclose()


async def test_a_call_failing_otherwise_lets_the_waiting_calls_go_at_once(
    app: App, server: ProviderServer, clock: FakeClock
) -> None:
    """The first call is refused for good (400): the others, held while it tried, go
    at once; nothing waits (no deadlock)."""
    server.fail_next(400)
    done = await app.arun(_fan(app, 3, stop_on_error=False), workflow_id="x1")  # type: ignore[arg-type]
    assert done.value.count(None) == 1  # the refused one; the others answered
    assert all(v in (None, f"echo: item {i}") for i, v in enumerate(done.value))
    assert clock.slept == []
    assert server.count(PATH) == 3


async def test_a_calls_latency_is_the_providers_time_not_its_wait_for_a_cooldown(
    database_url: str, server: ProviderServer
) -> None:
    """`latency_ms` was counted in real time from before a call waited for its
    provider's cooldown: now it is the provider's time on the App's clock, from when
    the request left. A request held 1.5 s took 1,500 ms; a call that waited 21.5 s
    for the cooldown and was then answered at once took 0."""
    providers = ai.Providers(openai=ai.OpenAI(api_key="k", base_url=server.openai_url, timeout=5))
    clock_a, clock_b = FakeClock(T0), FakeClock(T0)
    first = App(database_url, clock=clock_a, ai=providers)
    other = App(database_url, clock=clock_b, ai=providers)
    try:
        server.fail_next(429, retry_after="20", hold=True)
        run = asyncio.create_task(first.arun(_ask(first), workflow_id="l1"))  # type: ignore[arg-type]
        await eventually(lambda: server.count(PATH) == 1)  # the request is held there
        clock_a.advance(1.5)
        server.held.set()
        assert (await run).value == "echo: hi"
        calls = await first.alist_ai_calls("l1")
        assert [(c.error is None, c.latency_ms) for c in calls] == [(False, 1500), (True, 0)]
        assert (await other.arun(_ask(other), workflow_id="l2")).value == "echo: hi"  # type: ignore[arg-type]
        assert clock_b.slept == [21.5]  # it waited out the cooldown the 429 set
        assert [c.latency_ms for c in await other.alist_ai_calls("l2")] == [0]
    finally:
        await first.aclose()
        await other.aclose()
