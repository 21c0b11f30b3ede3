"""A step with `timeout=` whose own function raises `TimeoutError` (a socket's, a
client's) fails with that error, not with `StepTimeoutError`: its deadline never passed."""

from __future__ import annotations

import pytest

from tether import App, RetryPolicy, StepTimeoutError, Workflow


class ProviderTimeout(TimeoutError):
    """What a client raises when its own read deadline passes."""


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_steps_own_timeout_error_is_its_error_not_the_steps_timeout(
    app: App, asynchronous: bool
) -> None:
    calls: list[int] = []

    def sync_read() -> str:
        calls.append(1)
        raise ProviderTimeout("read timed out after 2s")

    async def async_read() -> str:
        return sync_read()

    # not retried: the caller says its provider's timeouts are final
    policy = RetryPolicy(attempts=3, backoff=0, non_retryable=(ProviderTimeout,))

    async def flow(wf: Workflow) -> str:
        fn = async_read if asynchronous else sync_read
        return await wf.step("read", fn, timeout=600, retry=policy)

    # before: StepTimeoutError "ran past its timeout of 600s" (it ran no time at all),
    # retried three times despite non_retryable, the provider's error lost
    with pytest.raises(ProviderTimeout, match="read timed out after 2s") as caught:
        await app.arun(flow, workflow_id=f"own-timeout-{asynchronous}")
    assert not isinstance(caught.value, StepTimeoutError)
    assert calls == [1]
    record = await app.aget_record(f"own-timeout-{asynchronous}")
    assert record.last_error is not None and record.last_error.type == "ProviderTimeout"
