"""Publishing the outbox: deliver pending events to the sinks, in order per run.

Events are rows of the run's history, written in the transaction that caused
them; publishing happens afterwards, at least once. A failed delivery is
retried with capped exponential back-off; after `max_attempts` the event is
dead-lettered (and later events of its run move on). `replay_dead` puts dead
events back.

A pass starts no delivery once the guard set by `OutboxPolicy.deliver_while`
says stop: a maintenance pass must end within the lease of its chore lock, or
another worker would take the lock and deliver the same events again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from .._durations import check_seconds
from .._owners import forget_owner, new_owner
from ..clock import Clock
from ..errors import InvalidArgumentError
from ..store import LockOutcome, OutboxRow, Store
from ._sinks import EventSink, OutboxEvent

__all__ = [
    "OUTBOX_LOCK",
    "OutboxPolicy",
    "Taken",
    "flush",
    "flush_alone",
    "keep_lock",
    "one_warning",
]

log = logging.getLogger("tether.outbox")

# an event -> the sinks that took it at an attempt that a later sink failed
Taken = dict[tuple[str, int], list[EventSink]]
# a failed delivery: run, seq, error, when to retry it (None: dead-lettered)
_Failed = tuple[str, int, str, datetime | None]
_MAX_TAKEN = 10_000  # entries kept at most (others go on to deliver some: forgotten)

OUTBOX_LOCK = ("chore", "outbox")  # (scope, key) of the lock a pass holds
_ALONE_TTL = 30.0  # the lease of that lock while a dispatched `outbox.flush` delivers

_go_on: ContextVar[Callable[[], bool] | None] = ContextVar("tether_outbox_go_on", default=None)


@dataclass(frozen=True)
class OutboxPolicy:
    """Retries of a failed delivery, and how long one delivery may take.

    `delivery_timeout` bounds each sink's ``publish`` (real seconds): a sink that
    never returns (a plugin awaiting a dead broker) fails its delivery instead of
    holding the pass, its renewed chore lock and so every later maintenance chore.

    `claim_lease` is how long a batch's events stay claimed by the publisher that took
    them (seconds of the store's clock): no other publisher takes them meanwhile, even
    once the first lost its chore lock (its process stalled past the lock's lease). A
    publisher starts no delivery after half of it, so a stall of up to the other half
    (less its delivery in flight) delivers no event twice; a longer one may. A publisher
    that dies mid-batch leaves its unfinished events to wait this long. It must be at
    least twice `delivery_timeout`, so that a delivery started by half the claim ends
    within it.
    """

    max_attempts: int = 8
    backoff: float = 1.0
    max_delay: float = 300.0
    delivery_timeout: float = 60.0
    claim_lease: float = 120.0

    def __post_init__(self) -> None:
        # each kept as float seconds: a timedelta was let through (the error says one may
        # be given) and the first failed delivery's back-off then raised TypeError in the
        # middle of a pass, every pass, the event never recorded as failed nor dead
        for name in ("backoff", "max_delay", "delivery_timeout", "claim_lease"):
            seconds = check_seconds(
                f"OutboxPolicy {name}",
                getattr(self, name),
                positive=name in ("delivery_timeout", "claim_lease"),
            )
            object.__setattr__(self, name, seconds)
        if self.claim_lease < 2 * self.delivery_timeout:
            # a publisher starts deliveries until half the claim: one started then and
            # slow to the end of its timeout outlived the claim, and another publisher
            # took the same event (and the run's later ones, sent before it)
            raise InvalidArgumentError(
                f"OutboxPolicy claim_lease ({self.claim_lease:g} s) must be at least twice "
                f"delivery_timeout ({self.delivery_timeout:g} s), or a delivery may outlive "
                f"its claim and its event be sent twice; raise claim_lease to "
                f"{2 * self.delivery_timeout:g} or lower delivery_timeout"
            )
        # checked here, not at the first failed delivery: a retry time past a datetime's
        # range raised in the middle of a pass, every pass, and the event was never
        # recorded as failed nor dead-lettered (the outbox stuck on it for good)
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise InvalidArgumentError(
                f"max_attempts must be an integer >= 1 (deliveries of an event before it is "
                f"dead-lettered), got {attempts!r}; e.g. OutboxPolicy(max_attempts=8)"
            )

    def delay(self, attempts: int) -> float:
        """Seconds before retrying after `attempts` failed deliveries: doubling from
        `backoff`, capped at `max_delay` (however many attempts: no float overflow)."""
        try:
            doubled = self.backoff * 2.0 ** max(0, attempts - 1)
        except OverflowError:  # 2.0 ** n beyond a float: past any cap
            return float(self.max_delay)
        return float(min(self.max_delay, doubled))

    @staticmethod
    @contextmanager
    def deliver_while(go_on: Callable[[], bool]) -> Iterator[None]:
        """Have each flush in this context start a delivery only while `go_on()` holds.

        The `outbox.flush` command carries no deadline; the maintenance chore sets one
        here (its time budget, its lock still held) and dispatches the command as usual.
        """
        token = _go_on.set(go_on)
        try:
            yield
        finally:
            _go_on.reset(token)


def _event(row: OutboxRow) -> OutboxEvent:
    return OutboxEvent(
        workflow_id=row.workflow_id,
        seq=row.seq,
        type=row.type,
        message=row.message,
        detail=None if row.detail is None else json.loads(row.detail),
        at=row.at,
        attempt=row.attempts + 1,
        run_created=row.run_created,
    )


async def flush(
    store: Store,
    sinks: Sequence[EventSink],
    clock: Clock,
    policy: OutboxPolicy,
    *,
    max_events: int,
    taken: Taken | None = None,
) -> tuple[int, int, int]:
    """One pass over the outbox; (delivered, failed, dead-lettered). Events not tried
    (`OutboxPolicy.deliver_while` said stop) stay pending, their attempts uncounted.

    What was tried is recorded even when the pass is cancelled (a worker or an App
    stopping): otherwise a clean exit would have every event it delivered in this
    batch delivered again. Only the delivery in flight then stays pending.

    With no sinks it delivers nothing: marking the events published to nobody took
    them from the App that has sinks (an App with no sinks leaves the outbox be).

    `taken` (the kernel's, kept from pass to pass) remembers which sinks took an event
    that a later sink failed, so its retry goes to the sinks that did not: a broker
    that was down made every other sink get each of its retried events again, up to
    8 times over. Only this process remembers: at least once still holds. The batch is
    claimed (`Store.outbox_claim`): no other publisher takes it, even one that took the lock."""
    if not sinks:
        return 0, 0, 0
    if taken is None:
        taken = {}
    elif len(taken) > _MAX_TAKEN:  # events another process went on to deliver
        taken.clear()
    lease = policy.claim_lease
    stop_at = clock.now() + timedelta(seconds=lease / 2)  # a delivery begun ends in the claim
    rows = await store.outbox_claim(limit=max_events, lease=lease, now=clock.store_time())
    go_on = _go_on.get() or (lambda: True)
    delivered: list[tuple[str, int]] = []
    failed: list[_Failed] = []
    blocked: set[str] = set()
    try:
        for row in rows:
            if row.workflow_id in blocked:
                continue  # keep order: nothing after a failed event of the same run
            if not go_on() or clock.now() >= stop_at:
                break
            outcome = await _deliver(sinks, _event(row), policy.delivery_timeout, taken)
            if outcome is None:
                delivered.append((row.workflow_id, row.seq))
                continue
            error, wait = outcome
            retry_at = _retry_at(row, error, clock, policy, wait)
            failed.append((row.workflow_id, row.seq, error, retry_at))
            if retry_at is not None:
                blocked.add(row.workflow_id)
            else:  # dead: a replay delivers it to every sink again
                taken.pop((row.workflow_id, row.seq), None)
    finally:  # shielded: a cancelled pass still records its deliveries
        await asyncio.shield(_record(store, clock, rows, delivered, failed))
    dead = sum(1 for *_, retry_at in failed if retry_at is None)
    if len(failed) > dead:
        _say_failed(rows, failed, policy)
    return len(delivered), len(failed) - dead, dead


async def _record(
    store: Store,
    clock: Clock,
    rows: Sequence[OutboxRow],
    delivered: Sequence[tuple[str, int]],
    failed: Sequence[_Failed],
) -> None:
    """Record a batch's deliveries and failures, and hand back the claimed rows it did
    not try (a stop, a failed earlier event of their run): else they waited out the
    claim's lease, not their run's back-off or the next pass."""
    if not rows:
        return
    tried = {*delivered, *((wid, seq) for wid, seq, *_ in failed)}
    left = [r for r in rows if (r.workflow_id, r.seq) not in tried]
    await store.outbox_mark(delivered=delivered, failed=failed, at=clock.now(), released=left)


@dataclass
class _Failures:
    """The deliveries to be retried that a pass has not said yet: their count, and the
    first one (run, seq, attempt, error)."""

    max_attempts: int
    count: int = 0
    first: tuple[str, int, int, str] | None = None

    def add(self, rows: Sequence[OutboxRow], failed: Sequence[_Failed]) -> None:
        retried = [
            (wid, seq, error) for wid, seq, error, retry_at in failed if retry_at is not None
        ]
        if retried and self.first is None:
            wid, seq, error = retried[0]
            at = next((r.attempts + 1 for r in rows if (r.workflow_id, r.seq) == (wid, seq)), 1)
            self.first = (wid, seq, at, error)
        self.count += len(retried)

    def say(self) -> None:
        """One warning for them all: a sink that is down or refuses everything said
        nothing until its events were dead-lettered, minutes later (8 attempts of
        back-off); and a warning a batch said it many times over in a pass."""
        if self.first is None:
            return
        wid, seq, attempt, error = self.first
        log.warning(
            "%d event delivery(ies) failed and will be retried with back-off, each "
            "dead-lettered after %d attempts (first: %s:%d, attempt %d: %s)",
            self.count,
            self.max_attempts,
            wid,
            seq,
            attempt,
            error,
        )


_failures: ContextVar[_Failures | None] = ContextVar("tether_outbox_failures", default=None)


@contextmanager
def one_warning(policy: OutboxPolicy) -> Iterator[None]:
    """Have the flushes in this context (the batches of one pass) say their failed
    deliveries in one warning as it ends, rather than one a batch."""
    failures = _Failures(policy.max_attempts)
    token = _failures.set(failures)
    try:
        yield
    finally:
        _failures.reset(token)
        failures.say()


def _say_failed(rows: Sequence[OutboxRow], failed: Sequence[_Failed], policy: OutboxPolicy) -> None:
    """Say the deliveries to be retried now, or at the end of the pass (`one_warning`)."""
    pending = _failures.get()
    if pending is not None:
        pending.add(rows, failed)
        return
    now = _Failures(policy.max_attempts)
    now.add(rows, failed)
    now.say()


async def _deliver(
    sinks: Sequence[EventSink], event: OutboxEvent, timeout: float, taken: Taken
) -> tuple[str, float] | None:
    """Hand `event` to every sink that has not taken it yet (`taken`), each within
    `timeout` seconds; None if all took it, else the first one's error and the seconds
    it asked to be left alone (`_asked_wait`)."""
    key = (event.workflow_id, event.seq)
    took = taken.setdefault(key, [])
    for sink in sinks:
        if any(s is sink for s in took):
            continue  # took it at an earlier attempt that a later sink failed
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                await sink.publish(event)
        except (Exception, asyncio.CancelledError) as exc:
            if not took:
                del taken[key]
            if isinstance(exc, asyncio.CancelledError):
                _reraise_if_ours(exc)
                return f"CancelledError: {type(sink).__name__}.publish was cancelled inside", 0.0
            if isinstance(exc, TimeoutError) and scope.expired():
                return (
                    f"TimeoutError: {type(sink).__name__} did not take the event within {timeout:g} s",
                    0.0,
                )
            return _error_text(exc), _asked_wait(exc)
        took.append(sink)
    del taken[key]
    return None


def _reraise_if_ours(exc: asyncio.CancelledError) -> None:
    """Raise `exc` if this pass is being cancelled (its host stopping). Else a sink's
    own awaitable was cancelled under it (a broker client dropping its pending publish):
    that ended the pass, the tick, and a worker's maintenance for good (no timers fired,
    no leases reaped), its event never failed, so never dead-lettered."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise exc


def _error_text(exc: Exception) -> str:
    """`exc` as text every store can keep: a NUL (PostgreSQL refuses it) or a lone
    surrogate (neither store can encode one) in a sink's error failed the whole pass's
    record, so its batch was delivered again at every pass, and that event never
    dead-lettered."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # a plugin's exception whose __str__ raises
        text = f"{type(exc).__name__}: (its message could not be read)"
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _asked_wait(exc: Exception) -> float:
    """The seconds a sink's error asks to wait before the next attempt (its `retry_after`:
    a webhook's 429 or 503 `Retry-After`), else 0."""
    try:
        wait = getattr(exc, "retry_after", None)
    except Exception:  # a plugin's property that raises: no wait asked
        return 0.0
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
        return 0.0
    return float(wait)


def _retry_at(
    row: OutboxRow, error: str, clock: Clock, policy: OutboxPolicy, wait: float = 0.0
) -> datetime | None:
    """When to try a failed event again, not before the `wait` its sink asked for (up to
    `max_delay`): a receiver answering 429 with Retry-After was tried again a second
    later, refused again, and the event dead-lettered within minutes; None once its
    attempts are used up (dead)."""
    attempts = row.attempts + 1
    if attempts >= policy.max_attempts:
        log.warning(
            "event %s:%d dead-lettered after %d attempts: %s",
            row.workflow_id,
            row.seq,
            attempts,
            error,
        )
        return None
    delay = max(policy.delay(attempts), min(wait, policy.max_delay))
    return clock.now() + timedelta(seconds=delay)


async def flush_alone(
    store: Store, clock: Clock, deliver: Callable[[], Awaitable[tuple[int, int, int]]]
) -> tuple[int, int, int]:
    """`deliver` (one flush) as an `outbox.flush` dispatched outside a pass does it: under
    the lock a pass holds, renewed while it delivers, released after; (0, 0, 0) while
    another process holds it. Without the lock, a flush (`app.kernel.dispatch(
    OutboxFlush())`) beside a worker delivered every event of its batch a second time."""
    if _go_on.get() is not None:  # inside a pass (`publish_outbox`): it holds the lock
        return await deliver()
    holder = new_owner()
    got = await store.acquire_lock(
        *OUTBOX_LOCK, holder, ttl=_ALONE_TTL, now=clock.store_time(), at=clock.now()
    )
    if got.outcome is LockOutcome.CONFLICT:
        return 0, 0, 0
    lost = asyncio.Event()
    keeper = asyncio.ensure_future(keep_lock(store, clock, holder, _ALONE_TTL, lost))
    try:
        with OutboxPolicy.deliver_while(lambda: not lost.is_set()):
            return await deliver()
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        try:  # shielded: a cancelled flush hands the lock over at once too
            release = store.release_lock(
                *OUTBOX_LOCK, holder, now=clock.store_time(), at=clock.now()
            )
            await asyncio.shield(release)
        except Exception as exc:  # it lapses after its lease instead
            log.warning("releasing the outbox chore lock failed: %s", exc)
        finally:
            forget_owner(holder)  # one a flush: not kept among the process's live owners


async def keep_lock(
    store: Store, clock: Clock, holder: str, ttl: float, lost: asyncio.Event
) -> None:
    """Renew the outbox lock every third of its TTL (real seconds) until cancelled; set
    `lost` if another holder has it now."""
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            row = await store.renew_lock(*OUTBOX_LOCK, holder, ttl=ttl, now=clock.store_time())
        except Exception as exc:  # the database blinked: try again at the next turn
            log.warning("renewing the outbox chore lock failed: %s", exc)
            continue
        if row is None:
            log.warning("the outbox chore lock expired; stopping this pass")
            lost.set()
            return
