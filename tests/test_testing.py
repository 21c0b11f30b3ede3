"""The public names of the subpackages (kernel, store, worker, testing), and `eventually`."""

from __future__ import annotations

import asyncio

import pytest

import tether.kernel
import tether.server
import tether.store
import tether.testing
import tether.worker
from tether.testing import FakeClock, eventually, eventually_sync

KERNEL = {
    "CallableSink",
    "CollectingSink",
    "CompensationsRetried",
    "Command",
    "CommandResult",
    "EventSink",
    "JobExecute",
    "JobExecuted",
    "Kernel",
    "LeaseReapStale",
    "LoggingSink",
    "OutboxEvent",
    "OutboxFlush",
    "OutboxFlushed",
    "OutboxPolicy",
    "OutboxReplayDead",
    "Reaped",
    "Replayed",
    "RunAdoptOrphans",
    "RunCancel",
    "RunCancelled",
    "RunCreate",
    "RunCreated",
    "RunHost",
    "RunReapStuck",
    "RunRerunFrom",
    "RunResume",
    "RunRetryCompensations",
    "RunResumed",
    "TimersFire",
    "WebhookSink",
    "Woken",
    "WorkflowRegistry",
    "check_signed",
    "new_run_id",
    "publish_outbox",
    "sign",
    "verify",
}
WORKER = {"MaintenanceReport", "ProcessReport", "ServerlessHost", "Worker", "maintenance_tick"}
TESTING = {
    "FakeClock",
    "eventually",
    "eventually_sync",
    "memory_app",
    "pass_time",
    "pass_time_sync",
    "tether_app",
    "tether_app_options",
    "tether_clock",
}


STORE = {
    "AICallRow",
    "AISpend",
    "AIUsageRow",
    "ApiTokenRow",
    "Claimed",
    "EndReason",
    "DEFAULT_URL",
    "Durability",
    "EventRow",
    "Fence",
    "HeartbeatRow",
    "IdempotentAnswer",
    "JobRow",
    "JobStatus",
    "LockOutcome",
    "LockResult",
    "LockRow",
    "NewAICall",
    "NewEvent",
    "NewJob",
    "NewRun",
    "NewWait",
    "OutboxRow",
    "PgConfig",
    "QueueLimit",
    "RunClaim",
    "RunFilter",
    "RunHistory",
    "RunRow",
    "RunStatus",
    "ScheduleRow",
    "StepRow",
    "StepStatus",
    "Store",
    "WaitKind",
    "WaitRow",
    "WaitStatus",
    "open_store",
    "parse_pg_url",
    "resolve_url",
    "Histogram",
    "QueueDepth",
    "ENV_VAR",
    "check_url",
    "parse_sqlite_url",
    "redact",
    "run_settled",
    "kept_attempt",
    "kept_detail",
}

SERVER = {
    "SCOPES",
    "AICall",
    "ApiError",
    "ApiTokenCreated",
    "ApiTokenInfo",
    "ApiUnreachable",
    "AsyncClient",
    "Call",
    "Calls",
    "Client",
    "DispatcherView",
    "Event",
    "QueueInfo",
    "RunPage",
    "RunSummary",
    "ServerConfig",
    "UsageRow",
    "WaitSummary",
    "Webhook",
    "WorkerInfo",
    "check_bind",
    "create_app",
    "create_token",
    "dispatcher_routes",
    "hash_token",
    "is_loopback",
    "webhooks_from_env",
}


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (tether.kernel, KERNEL),
        (tether.store, STORE),
        (tether.worker, WORKER),
        (tether.testing, TESTING),
        (tether.server, SERVER),
    ],
    ids=["kernel", "store", "worker", "testing", "server"],
)
def test_subpackage_names_are_pinned(module: object, expected: set[str]) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert set(names) == expected
    for name in names:
        assert hasattr(module, name), name


async def test_eventually_returns_the_first_truthy_value() -> None:
    seen: list[int] = []

    async def grows() -> int | None:
        seen.append(len(seen))
        return len(seen) if len(seen) >= 3 else None

    assert await eventually(grows, interval=0.001) == 3


async def test_eventually_says_what_it_last_saw() -> None:
    def status() -> None:
        raise AssertionError("status was 'running'")

    with pytest.raises(AssertionError, match=r"status did not hold within 0.05s; .*'running'"):
        await eventually(status, timeout=0.05, interval=0.01)
    with pytest.raises(AssertionError, match=r"last seen: it returned \[\]"):
        await eventually(lambda: [], timeout=0.05)


async def test_eventually_raises_other_errors_at_once() -> None:
    with pytest.raises(KeyError):
        await eventually(lambda: {}["x"], timeout=5)


async def test_eventually_fails_at_its_timeout_on_a_condition_that_never_returns() -> None:
    """An async condition awaiting what never comes (a run's result, a lock) made
    `eventually` hang the test for good: its timeout was checked only between calls."""
    never = asyncio.Event()

    async def stuck() -> bool:
        await never.wait()
        return True

    with pytest.raises(AssertionError, match=r"stuck did not hold within 0.1s; .*still running"):
        await asyncio.wait_for(eventually(stuck, timeout=0.1), 5)


async def test_eventually_raises_the_conditions_own_timeout_error_at_once() -> None:
    """Only its own deadline fails the wait; a `TimeoutError` the condition raises is
    one of its errors, raised as it is."""
    calls: list[int] = []

    async def times_out() -> bool:
        calls.append(1)
        raise TimeoutError("the result did not come within 1 s")

    with pytest.raises(TimeoutError, match="did not come"):
        await eventually(times_out, timeout=5)
    assert calls == [1]


async def test_eventually_moves_a_fake_clock() -> None:
    clock = FakeClock()
    start = clock.now()
    await eventually(lambda: (clock.now() - start).total_seconds() >= 60, interval=5, clock=clock)
    await asyncio.sleep(0)


def test_eventually_sync_polls_until_true() -> None:
    calls = iter(range(100))
    assert eventually_sync(lambda: next(calls) >= 2, interval=0.001) is True


def test_eventually_sync_refuses_an_async_condition() -> None:
    """Its coroutine, never awaited, counted as true: the wait returned at once and
    the test passed whatever the condition would have said."""

    async def never() -> bool:
        return False

    with pytest.raises(TypeError, match=r"await tether\.testing\.eventually"):
        eventually_sync(never, timeout=1)
