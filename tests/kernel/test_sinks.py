"""The sinks' blocking calls run in a few reused threads, waited for on close and at exit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

from tether.kernel import CallableSink, OutboxEvent
from tether.testing import eventually

from .._broker import HeldBroker


def _event(seq: int) -> OutboxEvent:
    return OutboxEvent("r1", seq, "step.completed", None, None, datetime(2026, 3, 1, tzinfo=UTC), 1)


async def test_deliveries_reuse_a_few_threads() -> None:
    """A thread per delivery: a busy outbox made and destroyed thousands of them."""
    threads: set[tuple[int, int]] = set()

    def deliver(event: OutboxEvent) -> None:
        threads.add((threading.get_ident(), threading.get_native_id()))

    sink = CallableSink(deliver)
    for seq in range(100):
        await sink.publish(_event(seq))
    for burst in range(10):  # several at once (Apps sharing one sink)
        await asyncio.gather(*(sink.publish(_event(1000 + burst * 10 + i)) for i in range(10)))
    assert 1 <= len(threads) <= 4
    await sink.aclose()


async def test_close_waits_for_a_delivery_in_flight() -> None:
    broker = HeldBroker()
    sink = CallableSink(broker.deliver)
    delivery = asyncio.ensure_future(sink.publish(_event(1)))
    await eventually(broker.started.is_set)
    closing = asyncio.ensure_future(sink.aclose())
    broker.release.set()
    await closing
    assert broker.finished == [1]  # done before close returned, not cut off after
    await delivery


EXITING = textwrap.dedent(
    """
    import asyncio, sys, threading, time
    from datetime import UTC, datetime
    from tether.kernel import CallableSink, OutboxEvent

    out = sys.argv[1]
    started = threading.Event()

    def deliver(event):
        started.set()
        time.sleep(1)  # a slow broker
        with open(out, "w") as f:
            f.write(f"{event.workflow_id}:{event.seq}")

    async def main():
        sink = CallableSink(deliver)
        event = OutboxEvent("r1", 7, "t", None, None, datetime.now(UTC), 1)
        asyncio.ensure_future(sink.publish(event))
        await asyncio.to_thread(started.wait)

    asyncio.run(main())  # returns with the delivery in flight; the interpreter exits
    """
)


def test_a_normal_exit_lets_a_delivery_in_flight_finish(tmp_path: Path) -> None:
    """The delivery ran in a daemon thread, killed midway as the interpreter exited."""
    script, out = tmp_path / "exiting.py", tmp_path / "delivered"
    script.write_text(EXITING)
    done = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert out.read_text() == "r1:7"
