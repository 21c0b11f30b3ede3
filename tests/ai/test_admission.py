"""Parallel branches share one budget: calls in flight are admitted against it, so a
`for_each` overshoots by about one call, as sequential calls do; on both backends."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from pydantic import BaseModel

from tether import App, FakeClock, Workflow, ai
from tether.ai import Budget, ModelReply, Spend, TextRequest
from tether.ai._admission import Admissions, Ticket
from tether.ai._client import ADMISSIONS

CALL = 200_000  # micro-USD: 1000 tokens in and 1000 out at $100 / MTok
PRICES = ai.Prices({"crowd:m": {"input_per_million": 100, "output_per_million": 100}})


class Crowd(ai.FakeModel):
    """Calls that wait for one another: the first until `first` is set (at once
    without `hold_first`), every later one until `together` calls are in flight at
    once. `peak` is the most that were; `beside_first` how many came while the
    first was held."""

    def __init__(self, together: int, *, hold_first: bool = True) -> None:
        super().__init__(usage=ai.Usage(input_tokens=1000, output_tokens=1000))
        self.first = asyncio.Event()
        if not hold_first:
            self.first.set()
        self.together = together
        self.asked = self.flying = self.peak = self.beside_first = 0
        self._all_in = asyncio.Event()

    async def generate(self, model: str, request: TextRequest) -> ModelReply:
        self.asked += 1
        self.flying += 1
        self.peak = max(self.peak, self.flying)
        try:
            if self.asked == 1:
                await self.first.wait()
            else:
                self.beside_first += not self.first.is_set()
                if self.flying >= self.together:
                    self._all_in.set()
                # a read made while the first call's step was being logged counts that
                # call twice (to be safe) and admits one fewer: then this wait ends on
                # its own instead of for ever
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._all_in.wait(), 2)
            return await super().generate(model, request)
        finally:
            self.flying -= 1


def _fan(app: App, budget: ai.Budget | None) -> object:
    @app.workflow(name="fan", budget=budget)
    async def fan(wf: Workflow) -> int:
        async def one(i: int) -> str:
            return (await wf.ai.generate_text("crowd:m", prompt=f"item {i}")).text

        s = await wf.for_each(range(10), one, max_parallel=10, stop_on_error=False)
        errors = [r.error for r in s.results if r.error is not None]
        if errors:
            raise errors[0]
        return s.fulfilled

    return fan


def _first_once_all_asked(app: App, crowd: Crowd, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hold the first call until every branch has read the spend (and so decides, with
    the first call in flight and no cost known yet)."""
    spend = app.store.ai_spend
    reads = 0

    async def counted(workflow_id: str, budget_key: str | None, **how: Any) -> ai.Spend:
        nonlocal reads
        found = await spend(workflow_id, budget_key, **how)
        reads += 1
        if reads >= 10:
            crowd.first.set()
        return found

    monkeypatch.setattr(app.store, "ai_spend", counted)


@pytest.mark.parametrize("key", [None, "team"])
@pytest.mark.parametrize(
    ("limit", "together", "calls"),
    [
        (0.5, 2, 3),  # $0.20 returned: $0.20 + 1 x $0.20 in flight < $0.50, + 2 x is not
        (0.9, 4, 5),  # $0.20 + 3 x $0.20 < $0.90
    ],
)
async def test_parallel_branches_overshoot_their_budget_by_about_one_call(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    key: str | None,
    limit: float,
    together: int,
    calls: int,
) -> None:
    crowd = Crowd(together)
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(crowd=crowd, prices=PRICES))
    _first_once_all_asked(app, crowd, monkeypatch)
    fan = _fan(app, ai.Budget(max_usd=limit, key=key))
    try:
        with pytest.raises(ai.BudgetExceededError) as raised:
            await app.arun(fan, workflow_id="fan-1")
        made = len(crowd.calls)
        spent = f"spent ${made * CALL / 1e6:.4f} of ${limit:.4f}"  # exact, each call once
        assert spent in str(raised.value)
        # the first alone until its cost is known, then as many as the estimate allows
        # (one fewer when a read counted the first call twice, to be safe)
        assert crowd.beside_first == 0
        assert together - 1 <= crowd.peak <= together and calls - 1 <= made <= calls
        [usage] = await app.ausage(run="fan-1")
        assert usage.calls == made
        assert usage.cost_micro_usd <= limit * 1_000_000 + CALL  # about one call over
        assert len(ADMISSIONS) == 0  # nothing held once every call is logged
    finally:
        await app.aclose()


async def test_an_unbudgeted_fan_out_waits_for_nothing(database_url: str) -> None:
    crowd = Crowd(9, hold_first=False)  # the nine after the first wait for one another
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(crowd=crowd, prices=PRICES))
    fan = _fan(app, None)
    try:
        async with asyncio.timeout(30):  # serialised calls would never all be in flight
            assert (await app.arun(fan, workflow_id="free")).value == 10
        assert crowd.peak >= 9
        assert len(ADMISSIONS) == 0
    finally:
        await app.aclose()


async def test_parallel_branches_past_the_warning_line_warn_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    crowd = Crowd(9)  # the first alone; the nine after it in flight at once
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(crowd=crowd, prices=PRICES))
    _first_once_all_asked(app, crowd, monkeypatch)
    fan = _fan(app, ai.Budget(max_usd=100, warn_at=0.001))  # past the line after one call
    try:
        async with asyncio.timeout(30):
            assert (await app.arun(fan, workflow_id="warned")).value == 10
        # each judged on the spend past the line (one fewer when a read counted one twice)
        assert crowd.peak >= 8
        events = (await app.aget_record("warned")).events
        assert len([e for e in events if e.type == "budget.warning"]) == 1
        assert len(ADMISSIONS) == 0
    finally:
        await app.aclose()


async def test_a_retried_call_counts_its_failed_attempts_cost_once(database_url: str) -> None:
    class Answer(BaseModel):
        label: str

    replies: list[object] = [
        "not json",  # $0.30, then the schema is asked again and ...
        ai.ProviderError("rate limited", status=429, retryable=True),  # ... the step retries
        '{"label": "bug"}',
    ]
    fake = ai.FakeModel(replies, usage=ai.Usage(input_tokens=1500, output_tokens=1500))
    prices = ai.Prices({"fake:m": {"input_per_million": 100, "output_per_million": 100}})
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(fake=fake, prices=prices))

    @app.workflow(name="retried", budget=ai.Budget(max_usd=0.5))
    async def retried(wf: Workflow) -> str:
        return (await wf.ai.generate_object("fake:m", Answer, prompt="x")).object.label

    try:
        async with asyncio.timeout(30):  # $0.30 counted twice ($0.60) would wait for ever
            assert (await app.arun(retried, workflow_id="r")).value == "bug"
        assert len(ADMISSIONS) == 0
    finally:
        await app.aclose()


# -- the admission rules, against a log in memory --------------------------------------------


class Log:
    """The call log as `admit` reads it; `during` runs inside the next read."""

    def __init__(self) -> None:
        self.spend = Spend()
        self.during: list[object] = []

    def add(self, micro_usd: int) -> None:
        self.spend = Spend(calls=self.spend.calls + 1, micro_usd=self.spend.micro_usd + micro_usd)

    async def read(self) -> Spend:
        while self.during:
            step = self.during.pop(0)
            step()  # type: ignore[operator]
        return self.spend


async def _turns() -> None:
    for _ in range(5):  # let the other tasks run as far as they can (no time passes)
        await asyncio.sleep(0)


async def _admitted(admissions: Admissions, log: Log, budget: Budget) -> Ticket:
    _, ticket = await admissions.admit("run", budget, log.read)
    assert ticket is not None
    return ticket


def _answered(ticket: Ticket, micro_usd: int) -> None:
    ticket.cost(micro_usd, 10)
    ticket.returned(True)


def _logged(ticket: Ticket, log: Log, micro_usd: int) -> None:
    log.add(micro_usd)
    ticket.logged()


async def test_a_cost_in_the_log_and_in_memory_at_once_never_stops_a_call_under_the_limit() -> None:
    admissions, log, budget = Admissions(), Log(), Budget(max_usd=0.5)
    a = await _admitted(admissions, log, budget)
    _answered(a, 300_000)
    # a's step is written before it is known here as logged: the read sees it twice
    log.during = [lambda: log.add(300_000)]
    b = asyncio.ensure_future(admissions.admit("run", budget, log.read))
    await _turns()
    assert not b.done()  # $0.60 counted: it waits for what a's step logs
    a.logged()
    spend, ticket = await b
    assert ticket is not None and spend.micro_usd == 300_000  # read again: $0.30, admitted
    _answered(ticket, 300_000)
    # c reads while b's step is logged: b is in that read and was logged during it
    log.during = [lambda: _logged(ticket, log, 300_000)]
    spend, stopped = await admissions.admit("run", budget, log.read)
    assert stopped is None and spend.micro_usd == 600_000  # decided on a read made after
    assert len(admissions) == 0


async def test_a_call_that_failed_costing_nothing_tells_no_cost() -> None:
    admissions, log, budget = Admissions(), Log(), Budget(max_usd=1.0)
    a = await _admitted(admissions, log, budget)
    b = asyncio.ensure_future(admissions.admit("run", budget, log.read))
    c = asyncio.ensure_future(admissions.admit("run", budget, log.read))
    await _turns()
    assert not b.done() and not c.done()  # one at a time: no cost known
    a.returned(False)  # a rate limit, say: nothing spent, nothing learnt
    await _turns()
    assert [b.done(), c.done()] == [True, False]  # still one at a time
    a.logged()
    (_, b_ticket) = b.result()
    assert b_ticket is not None
    _answered(b_ticket, 100_000)
    _, c_ticket = await c  # $0.10 spent, none in flight
    assert c_ticket is not None
    d = asyncio.ensure_future(admissions.admit("run", budget, log.read))
    await _turns()
    assert d.done()  # $0.10 spent + 1 in flight x $0.10 < $1.00


async def test_a_waiting_call_cancelled_leaves_nothing_behind() -> None:
    admissions, log, budget = Admissions(), Log(), Budget(max_usd=1.0)
    a = await _admitted(admissions, log, budget)
    b = asyncio.ensure_future(admissions.admit("run", budget, log.read))
    await _turns()
    b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await b
    _answered(a, 100_000)
    _logged(a, log, 100_000)
    assert len(admissions) == 0


async def test_an_answer_without_usage_costs_unknown_not_nothing() -> None:
    admissions, log, budget = Admissions(), Log(), Budget(max_usd=1.0)
    a = await _admitted(admissions, log, budget)
    a.cost(None, 0)  # answered, but told no usage: billed an unknown amount
    a.returned(True)
    spend, b = await admissions.admit("run", budget, log.read)
    assert b is not None and (spend.calls, spend.unknown_cost_calls) == (1, 1)
    assert "(1 calls of unknown price not counted in dollars)" in budget.describe(spend)
