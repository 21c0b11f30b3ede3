"""The wait before a step's next attempt: the policy's, or what the failure asked for."""

from __future__ import annotations

from tether import App, FakeClock, RetryPolicy, Workflow


class _Busy(Exception):
    """A failure that says when to try again, as a provider's ``retry-after`` does."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"busy, try again in {retry_after}s")
        self.retry_after = retry_after


def _policy(delay: float) -> RetryPolicy:
    return RetryPolicy(attempts=2, backoff=delay, max_delay=delay, jitter=0)


async def _rested(app: App, clock: FakeClock, asked: float, delay: float) -> list[float]:
    """What the run rested before its second attempt, the first failing with `asked`."""
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise _Busy(asked)
        return "done"

    @app.workflow(name=f"flaky_{asked:g}_{delay:g}")
    async def flow(wf: Workflow) -> str:
        return await wf.step("call", flaky, retry=_policy(delay))

    clock.slept.clear()
    assert (await app.arun(flow, workflow_id=f"w-{asked:g}-{delay:g}")).value == "done"
    assert len(calls) == 2
    return list(clock.slept)


async def test_a_retry_after_past_the_cap_never_shortens_the_policys_wait(
    app: App, clock: FakeClock
) -> None:
    """Before, a failure asking for 10000 s under a policy waiting 7200 s was retried
    after 3600 s (the cap on what a failure may ask), sooner than either asked."""
    assert await _rested(app, clock, asked=10_000.0, delay=7200.0) == [7200.0]


async def test_a_retry_after_is_heeded_up_to_the_cap(app: App, clock: FakeClock) -> None:
    assert await _rested(app, clock, asked=90.0, delay=5.0) == [90.0]
    assert await _rested(app, clock, asked=10_000.0, delay=5.0) == [3600.0]
    assert await _rested(app, clock, asked=1.0, delay=5.0) == [5.0]
