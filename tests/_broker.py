"""A sink's broker that holds each delivery until released: for the tests of what waits
for a delivery in flight (a sink's close, an App's)."""

from __future__ import annotations

import threading
import time

from tether.kernel import OutboxEvent


class HeldBroker:
    """`deliver` blocks (in the sink's thread) until `release` is set."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished: list[int] = []

    def deliver(self, event: OutboxEvent) -> None:
        self.started.set()
        self.release.wait(30)
        time.sleep(0.05)  # the broker's answer takes a moment to read
        self.finished.append(event.seq)
