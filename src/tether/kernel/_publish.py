"""Publishing the outbox as a chore: under a lock, bounded in time.

The sinks are other people's servers. A slow or hanging one must neither keep
a host's other chores (due timers, above all) from running nor outlive the
lock that keeps a second process from delivering the same events again. So a
pass holds the ``outbox`` chore lock (renewed while a delivery is in flight),
starts no delivery once its budget is spent, and stops if the lock is lost.
Workers run it in their maintenance tick; `App.ahost_chores` (``tether
serve``) runs it too; both share the lock.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from .._durations import check_seconds
from ..store import LockOutcome
from ._commands import OutboxFlush, OutboxFlushed
from ._outbox import OUTBOX_LOCK, OutboxPolicy, keep_lock, one_warning

if TYPE_CHECKING:
    from ._kernel import Kernel

__all__ = ["OUTBOX_LOCK", "publish_outbox"]


async def publish_outbox(
    kernel: Kernel, holder: str, *, ttl: float, budget: float
) -> OutboxFlushed | None:
    """Publish batch after batch while a batch gets anywhere (delivers, or fails an
    event whose run then waits for its retry, so the next batch reaches other runs)
    and `budget` seconds of the kernel's clock last; the totals, or None if another
    holder has the lock. One batch a pass would cap delivery below what a few busy
    runs write. Between batches it pauses as long as the batch took: the runs' own
    writes get half of the store's time."""
    ttl = check_seconds("ttl", ttl, positive=True)  # a timedelta, as seconds
    budget = check_seconds("budget", budget)
    store, clock = kernel.store, kernel.clock
    if not kernel.sinks:  # nothing to publish to: the lock is left to an App that has sinks
        return OutboxFlushed(delivered=0, failed=0, dead=0)
    got = await store.acquire_lock(
        *OUTBOX_LOCK, holder, ttl=ttl, now=clock.store_time(), at=clock.now()
    )
    if got.outcome is LockOutcome.CONFLICT:
        return None
    deadline = clock.now() + timedelta(seconds=min(budget, ttl / 3))
    lost = asyncio.Event()
    total = OutboxFlushed(delivered=0, failed=0, dead=0)

    def go_on() -> bool:
        return not lost.is_set() and clock.now() < deadline

    keeper = asyncio.ensure_future(keep_lock(store, clock, holder, ttl, lost))
    try:
        with OutboxPolicy.deliver_while(go_on), one_warning(kernel.outbox):
            while go_on():
                began = time.monotonic()
                flushed = await kernel.adispatch(OutboxFlush())
                assert isinstance(flushed, OutboxFlushed)
                total = OutboxFlushed(
                    delivered=total.delivered + flushed.delivered,
                    failed=total.failed + flushed.failed,
                    dead=total.dead + flushed.dead,
                )
                if flushed.delivered + flushed.failed + flushed.dead == 0 or not go_on():
                    break
                left = (deadline - clock.now()).total_seconds()
                await asyncio.sleep(min(time.monotonic() - began, left))
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    return total
