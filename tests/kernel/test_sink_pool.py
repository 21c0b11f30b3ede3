"""`SinkPool`: a call given up on leaves room for the next, and one not started never runs."""

from __future__ import annotations

import asyncio
import threading

from tether.kernel._sink_pool import SinkPool, off_loop
from tether.testing import eventually


async def test_a_call_given_up_leaves_room_and_one_not_started_never_runs() -> None:
    """A receiver that never answers cannot starve the pool: each call given up on (its
    timeout passed) stops counting, and one given up before it started is dropped."""
    pool = SinkPool("test-sink", size=1)
    hang = threading.Event()
    ran: list[str] = []

    def call(name: str) -> str:
        ran.append(name)
        if name.startswith("hung"):
            hang.wait(30)
        return name

    try:
        hung = asyncio.ensure_future(off_loop(pool, call, "hung-1"))
        await eventually(lambda: ran == ["hung-1"])
        queued = asyncio.ensure_future(off_loop(pool, call, "never"))
        await asyncio.sleep(0)
        queued.cancel()  # given up while it waited for the one thread
        hung.cancel()  # and the hung one given up on: its thread leaves the bound
        await asyncio.gather(hung, queued, return_exceptions=True)
        assert await off_loop(pool, call, "next") == "next"
        assert ran == ["hung-1", "next"]
    finally:
        hang.set()
    assert pool.close() == 0
