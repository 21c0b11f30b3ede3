"""Claimed batches, on a SQLite file and on PostgreSQL: two Apps (each its own
connections) publish one outbox on a shared FakeClock, and the first stalls in its
sink mid-batch past its chore lock's lease (30 s) while the second publishes.

Before, the second took the lapsed lock and read the same undelivered events, so the
first's whole batch was delivered twice. Now the batch is claimed for
`OutboxPolicy.claim_lease` (120 s) as it is read: the second skips it (and the later
events of its runs) and delivers the rest; the first starts no delivery once half of
its claim is gone and hands back what it did not try."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from tether import App, FakeClock
from tether.kernel import CallableSink, OutboxEvent, OutboxFlush, OutboxFlushed
from tether.store import Fence, NewEvent, NewRun

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LOCK_TTL = 30.0  # the lease of the lock a dispatched `outbox.flush` holds


class _Pair:
    """Apps "a" and "b" on one database and clock; `seen` is (app, delivery id) of every
    delivery, in order; `stall`, if set, runs in a's sink at its `stall_at`-th delivery."""

    def __init__(self, url: str) -> None:
        self.clock = FakeClock(T0)
        self.seen: list[tuple[str, str]] = []
        self.stall: Callable[[], Awaitable[None]] | None = None
        self.stall_at = 3
        self.apps = {name: App(url, clock=self.clock, sinks=[self._sink(name)]) for name in "ab"}

    def _sink(self, name: str) -> CallableSink:
        async def publish(event: OutboxEvent) -> None:
            self.seen.append((name, f"{event.workflow_id}:{event.seq}"))
            if name == "a" and self.stall is not None and len(self.seen) == self.stall_at:
                await self.stall()

        return CallableSink(publish)

    async def flush(self, name: str, max_events: int = 500) -> OutboxFlushed:
        result = await self.apps[name].kernel.adispatch(OutboxFlush(max_events=max_events))
        assert isinstance(result, OutboxFlushed)
        return result

    def by(self, name: str) -> list[str]:
        return [d for who, d in self.seen if who == name]


@pytest.fixture
async def pair(database_url: str) -> AsyncIterator[_Pair]:
    both = _Pair(database_url)
    store = both.apps["a"].store
    for r in range(4):  # runs r0..r3 of 5 events each, r0 the oldest
        wid, at = f"r{r}", T0 + timedelta(seconds=r)
        await store.create_run(NewRun(wid, "wf", state="null"), at)
        gen = (await store.claim_run(wid, "o", at, NewEvent("workflow.running"))).generation
        await store.append_events(Fence(wid, gen), [NewEvent("tick")] * 4, at)
    yield both
    for app in both.apps.values():
        await app.aclose()


ALL = {f"r{r}:{s}" for r in range(4) for s in range(1, 6)}


async def test_a_publisher_stalled_past_its_lock_keeps_its_claimed_batch(pair: _Pair) -> None:
    """a claims 8 events (r0's five, r1's first three) and stalls 31 s at its third
    delivery: b takes the lapsed lock and delivers r2 and r3 only (r1's later events
    wait behind a's claim, in order); a goes on with its own batch. Each event once."""
    during: list[OutboxFlushed] = []

    async def stall() -> None:
        pair.clock.advance(LOCK_TTL + 1)  # a's lock lapses; its claim (120 s) holds
        during.append(await pair.flush("b"))

    pair.stall = stall
    assert (await pair.flush("a", max_events=8)).delivered == 8
    assert during == [OutboxFlushed(delivered=10, failed=0, dead=0)]
    assert pair.by("b") == [f"r{r}:{s}" for r in (2, 3) for s in range(1, 6)]
    assert (await pair.flush("b")).delivered == 2  # r1:4 and r1:5, after a's r1:1..3
    counts = Counter(d for _, d in pair.seen)
    assert set(counts) == ALL and set(counts.values()) == {1}
    r1 = [d for _, d in pair.seen if d.startswith("r1:")]
    assert r1 == [f"r1:{s}" for s in range(1, 6)]


async def test_a_publisher_stalled_past_half_its_claim_hands_back_what_it_did_not_try(
    pair: _Pair,
) -> None:
    """a stalls 70 s at its third delivery (past half its claim, within all of it): b
    delivers only r2 and r3 meanwhile; a then starts no further delivery and hands its
    five untried events back at once, so b delivers them next, long before a's claim
    would have lapsed. Each event once."""

    async def stall() -> None:
        pair.clock.advance(70)
        assert (await pair.flush("b")).delivered == 10

    pair.stall = stall
    assert (await pair.flush("a", max_events=8)).delivered == 3
    assert pair.by("a") == ["r0:1", "r0:2", "r0:3"]
    assert (await pair.flush("b")).delivered == 7  # r0:4..5 and r1:1..5, at T0 + 70 s
    counts = Counter(d for _, d in pair.seen)
    assert set(counts) == ALL and set(counts.values()) == {1}
