"""`Leases`: a component a reload replaced is closed once its last use ends."""

from __future__ import annotations

import asyncio

from tether.agents._leases import Leases


class _Client:
    """A component holding something to let go of (as the api backend's clients)."""

    name = "held"

    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


async def test_a_replaced_component_in_use_is_closed_when_its_use_ends_not_under_it() -> None:
    leases = Leases()
    busy, idle, kept = _Client(), _Client(), _Client()
    started, go_on = asyncio.Event(), asyncio.Event()

    async def turn() -> None:
        async with leases.hold(busy):
            started.set()
            await go_on.wait()
            assert not busy.closed  # replaced meanwhile, still not closed under its turn

    task = asyncio.ensure_future(turn())
    await started.wait()
    async with leases.hold(kept):
        pass
    leases.retire(busy)
    leases.retire(idle)
    await leases.close_idle()
    assert idle.closed and not busy.closed
    go_on.set()
    await task
    assert busy.closed and not kept.closed
