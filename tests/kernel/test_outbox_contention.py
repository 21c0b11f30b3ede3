"""The outbox under contention, on a SQLite file and on PostgreSQL, against a real
webhook receiver: two publisher processes deliver each event once; a publisher
SIGKILLed mid-pass leaves exactly its unfinished batch to be delivered again; an
event no receiver takes is retried on its back-off, then dead-lettered with its
error kept, and tried no more."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tether import App, FakeClock
from tether.kernel import (
    CallableSink,
    OutboxEvent,
    OutboxFlush,
    WebhookSink,
    publish_outbox,
)
from tether.store import Fence, NewEvent, NewRun
from tether.worker import maintenance_tick

from .._sql import execute

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
BATCH = OutboxFlush().max_events  # what one flush of a pass reads, and marks at its end


class _Receiver(http.server.ThreadingHTTPServer):
    """A webhook receiver that notes each delivery id as it arrives (before answering).
    It answers 204 after `delay` s, 503 to the ids in `refuse`, and holds the
    `block_at`-th request (1-based) unanswered until `release` is set."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.guard = threading.Lock()
        self.received: list[str] = []
        self.delay = 0.0
        self.refuse: set[str] = set()
        self.block_at: int | None = None
        self.blocked = threading.Event()
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        # the event (run:seq), without which run of the id it is: one run per id here
        srv, delivery = self.server, self.headers["X-Tether-Delivery"].rsplit(":", 1)[0]
        with srv.guard:
            srv.received.append(delivery)
            nth = len(srv.received)
        if nth == srv.block_at:
            srv.blocked.set()
            srv.release.wait(60)
            return  # never answered: its publisher dies waiting
        time.sleep(srv.delay)
        self.send_response(503 if delivery in srv.refuse else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    srv = _Receiver()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join()


async def _write_events(app: App, wid: str, count: int, at: datetime) -> None:
    """A run with `count` undelivered events, all at `at`."""
    store = app.store
    await store.create_run(NewRun(wid, "wf", state="null"), at)
    gen = (await store.claim_run(wid, "owner-a", at, NewEvent("workflow.running"))).generation
    await store.append_events(Fence(wid, gen), [NewEvent("tick")] * (count - 1), at)


async def _seed(url: str, runs: int, per_run: int) -> list[str]:
    """`runs` runs of `per_run` undelivered events; their delivery ids in the order the
    outbox publishes them (the run written first goes first, each in seq order)."""
    app = App(url, clock=FakeClock(T0))
    try:
        ids: list[str] = []
        for r in range(runs):
            await _write_events(app, f"r{r}", per_run, T0 + timedelta(seconds=r))
            ids += [f"r{r}:{e.seq}" for e in await app.store.list_events(f"r{r}")]
        return ids
    finally:
        await app.aclose()


def _spawn(tmp_path: Path, script: str, *args: str) -> subprocess.Popen[str]:
    path = tmp_path / "publisher.py"
    path.write_text(script)
    return subprocess.Popen(
        [sys.executable, str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _unpublished(url: str) -> int:
    return int(execute(url, "SELECT count(*) FROM events WHERE published_at IS NULL")[0][0])


# -- two publishers at once ---------------------------------------------------------------

RIVAL = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from datetime import UTC, datetime, timedelta
    import tether
    from tether.kernel import WebhookSink, publish_outbox

    url, hook, holder, go = sys.argv[1:5]
    TTL = 0.3

    async def main() -> None:
        app = tether.App(url, sinks=[WebhookSink(hook, "s3cret")])
        store = app.store
        await store.list_locks("chore")  # connected and migrated before the start
        print("ready", flush=True)
        while not os.path.exists(go):
            await asyncio.sleep(0.001)
        passes = delivered = 0
        later = datetime.now(UTC) + timedelta(days=1)  # the other's claims lapsed: all left
        while await store.outbox_pending(limit=1, now=later):
            flushed = await publish_outbox(app.kernel, holder, ttl=TTL, budget=0.05)
            if flushed is None:  # the other one holds the lock
                await asyncio.sleep(0.002)
                continue
            passes += 1
            delivered += flushed.delivered
            if passes % 3:  # hand the lock over at once, as a stopping worker does
                await store.release_lock("chore", "outbox", holder, now=None, at=app.clock.now())
            else:  # or keep it and stall past its lease: the other takes it on expiry
                await asyncio.sleep(TTL * 1.3)
        print(json.dumps({"passes": passes, "delivered": delivered}), flush=True)
        await app.aclose()

    asyncio.run(main())
    """
)


async def test_two_publisher_processes_deliver_every_event_exactly_once(
    database_url: str, receiver: _Receiver, tmp_path: Path
) -> None:
    """Two processes publish the same outbox at once, from the same instant, the chore
    lock changing hands between them (released, or lapsed while its holder stalls):
    the receiver gets every event once, each run's in seq order, and each event is
    marked published once."""
    ids = await _seed(database_url, runs=4, per_run=40)
    receiver.delay = 0.002  # a pass is a few dozen deliveries: the passes alternate
    go = tmp_path / "go"
    rivals = [
        _spawn(tmp_path, RIVAL, database_url, receiver.url, name, str(go)) for name in ("a", "b")
    ]
    try:
        for proc in rivals:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()  # both take the lock at once: no row for it exists yet
        outs = [await asyncio.to_thread(p.communicate, timeout=60) for p in rivals]
    finally:
        for proc in rivals:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(rivals, outs, strict=True):
        assert proc.returncode == 0, err
    reports = [json.loads(out.splitlines()[-1]) for out, _ in outs]
    assert all(r["delivered"] > 0 for r in reports), reports  # both published: contention
    counts = Counter(receiver.received)
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}
    for r in range(4):
        seqs = [int(d.split(":")[1]) for d in receiver.received if d.startswith(f"r{r}:")]
        assert seqs == sorted(seqs)
    assert sum(r["delivered"] for r in reports) == len(ids)
    assert execute(database_url, "SELECT DISTINCT attempts FROM events") == [(1,)]
    assert _unpublished(database_url) == 0


async def test_two_publishers_let_go_at_one_instant_one_publishes_the_other_stands_aside(
    database_url: str,
) -> None:
    """Two Apps (each its own connections) start a pass at the same instant, three
    times, the lock free each time (first never taken, then lapsed): one pass
    publishes everything, the other finds the lock taken and delivers nothing."""
    clock = FakeClock(T0)
    seen: Counter[str] = Counter()

    async def publish(event: OutboxEvent) -> None:
        seen[f"{event.workflow_id}:{event.seq}"] += 1
        await asyncio.sleep(0)  # the other pass gets its turn mid-batch

    apps = [App(database_url, clock=clock, sinks=[CallableSink(publish)]) for _ in range(2)]
    try:
        for app in apps:
            await app.store.list_locks("chore")  # connected before the race
        for race in range(3):
            await _write_events(apps[0], f"r{race}", 50, clock.now())
            passes = await asyncio.gather(
                *(publish_outbox(a.kernel, f"p{i}", ttl=30, budget=5) for i, a in enumerate(apps))
            )
            assert sorted(p is None for p in passes) == [False, True]
            assert [p.delivered for p in passes if p is not None] == [50]
            clock.advance(31)  # the winner's lease lapses: the next pass is a race again
    finally:
        for app in apps:
            await app.aclose()
    assert len(seen) == 150 and set(seen.values()) == {1}


# -- a publisher killed mid-pass ----------------------------------------------------------

DOOMED = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime
    import tether
    from tether.kernel import WebhookSink, publish_outbox

    url, hook, t = sys.argv[1:4]

    async def main() -> None:
        clock = tether.FakeClock(datetime.fromisoformat(t))  # stands still: no budget ends
        app = tether.App(url, clock=clock, sinks=[WebhookSink(hook, "s3cret")])
        await publish_outbox(app.kernel, "doomed", ttl=30, budget=5)
        print("finished", flush=True)  # never: the receiver holds a request until we die

    asyncio.run(main())
    """
)


async def test_a_publisher_killed_mid_pass_leaves_only_its_unfinished_batch_to_redeliver(
    database_url: str, receiver: _Receiver, tmp_path: Path
) -> None:
    """The guarantee is at least once, and how much more is bounded by the code: a flush
    marks its batch (up to `BATCH` events) published in one write after the batch, so a
    publisher killed mid-batch has its earlier batches marked and this one not. That
    batch stays claimed after its lock lapses, until its claim does
    (`OutboxPolicy.claim_lease`); then the next publisher delivers exactly that batch's
    deliveries again (the one in flight included), then the rest; nothing is lost,
    nothing else repeats. Receivers dedupe by ``X-Tether-Delivery``."""
    ids = await _seed(database_url, runs=6, per_run=(BATCH + 100) // 6)
    kill_at = BATCH + 20  # the 20th delivery of its second batch hangs
    receiver.block_at = kill_at
    proc = _spawn(tmp_path, DOOMED, database_url, receiver.url, T0.isoformat())
    clock = FakeClock(T0)
    heir = App(database_url, clock=clock, sinks=[WebhookSink(receiver.url, "s3cret")])
    try:
        while not receiver.blocked.wait(0.05):
            assert proc.poll() is None, proc.communicate()
        lock = await heir.store.get_lock("chore", "outbox")
        assert lock is not None and lock.holder == "doomed"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        receiver.release.set()
        sent_by_doomed = list(receiver.received)
        assert len(sent_by_doomed) == kill_at and _unpublished(database_url) == len(ids) - BATCH
        clock.advance(29)
        assert await publish_outbox(heir.kernel, "heir", ttl=30, budget=5) is None  # its lease
        clock.advance(2)
        held = await publish_outbox(heir.kernel, "heir", ttl=30, budget=5)  # its claim
        assert held is not None and held.delivered == 0
        clock.advance(heir.kernel.outbox.claim_lease - 31)
        flushed = await publish_outbox(heir.kernel, "heir", ttl=30, budget=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.communicate()
        await heir.aclose()
    assert flushed is not None and flushed.delivered == len(ids) - BATCH
    counts = Counter(receiver.received)
    assert sorted(counts) == sorted(ids)  # none lost
    again = {d for d, n in counts.items() if n > 1}
    assert again == set(sent_by_doomed[BATCH:]) and max(counts.values()) == 2
    assert _unpublished(database_url) == 0


WORKER_APP = textwrap.dedent(
    """
    import os
    import tether
    from tether.kernel import WebhookSink

    app = tether.App(os.environ["TETHER_DATABASE_URL"],
                     sinks=[WebhookSink(os.environ["HOOK"], "s3cret")])
    """
)


async def test_a_worker_stopped_mid_pass_records_what_it_delivered(
    database_url: str, receiver: _Receiver, tmp_path: Path
) -> None:
    """SIGTERM is a clean exit: the worker cancels its outbox pass, and the pass records
    the deliveries it made before the one in flight. Before, the cancelled pass wrote
    nothing, so every event it had delivered went out again after the exit; now only
    the delivery in flight (its answer never read) goes out twice."""
    ids = await _seed(database_url, runs=3, per_run=10)
    receiver.block_at = 12  # the worker is mid-batch, this delivery in flight
    (tmp_path / "flows.py").write_text(WORKER_APP)
    env = {**os.environ, "TETHER_DATABASE_URL": database_url, "HOOK": receiver.url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "worker", "--app", "flows.py:app", "-q", "none"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    heir = App(database_url, sinks=[WebhookSink(receiver.url, "s3cret")])
    try:
        while not receiver.blocked.wait(0.05):
            assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err
        receiver.release.set()
        assert _unpublished(database_url) == len(ids) - 11  # what it delivered is recorded
        flushed = await publish_outbox(heir.kernel, "heir", ttl=30, budget=5)  # lock released
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        await heir.aclose()
    assert flushed is not None and flushed.delivered == len(ids) - 11
    counts = Counter(receiver.received)
    assert sorted(counts) == sorted(ids)  # none lost
    assert [d for d, n in counts.items() if n > 1] == [receiver.received[11]]
    assert _unpublished(database_url) == 0


# -- dead letters -------------------------------------------------------------------------


async def test_an_event_no_receiver_takes_is_dead_lettered_with_its_error_and_left_be(
    app: App,
    clock: FakeClock,
    database_url: str,
    receiver: _Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each failure waits its back-off (1, 2, 4 ... s: not a moment less) holding back
    its run's later events; the last allowed attempt dead-letters it: `dead_at` set,
    the receiver's answer kept in `last_error`, the worker's report and log say so,
    `outbox_dead` lists it, the run's later events go, and it is never tried again
    until an operator replays it."""
    policy = app.kernel.outbox
    app.kernel.sinks.append(WebhookSink(receiver.url, "s3cret"))
    receiver.refuse = {"doomed:1"}
    await _write_events(app, "doomed", 3, clock.now())
    for attempt in range(1, policy.max_attempts):
        tick = await maintenance_tick(app, "w1", chores=("outbox",))
        assert (tick.outbox_failed, tick.outbox_dead, tick.outbox_delivered) == (1, 0, 0)
        assert receiver.received == ["doomed:1"] * attempt  # seq 2 and 3 wait behind it
        clock.advance(policy.delay(attempt) - 0.001)
        await maintenance_tick(app, "w1", chores=("outbox",))
        assert len(receiver.received) == attempt  # its back-off is not over
        clock.advance(0.001)
    with caplog.at_level(logging.WARNING, logger="tether.outbox"):
        last = await maintenance_tick(app, "w1", chores=("outbox",))
    assert (last.outbox_failed, last.outbox_dead, last.outbox_delivered) == (0, 1, 2)
    assert receiver.received == ["doomed:1"] * policy.max_attempts + ["doomed:2", "doomed:3"]
    error = f"ConnectionError: webhook {receiver.url} answered HTTP 503"
    [(attempts, dead_at, next_at, last_error)] = execute(
        database_url,
        "SELECT attempts, dead_at, next_attempt_at, last_error FROM events "
        "WHERE run_id = 'doomed' AND seq = 1",
    )
    assert (attempts, last_error, next_at) == (policy.max_attempts, error, None)
    assert dead_at is not None
    [dead] = await app.adead_letters()  # what an operator reads (`tether outbox dead`)
    assert (dead.workflow_id, dead.seq, dead.attempts) == ("doomed", 1, policy.max_attempts)
    assert (dead.last_error, dead.dead_at) == (error, clock.now())
    assert f"event doomed:1 dead-lettered after {policy.max_attempts} attempts: {error}" in [
        r.getMessage() for r in caplog.records
    ]
    clock.advance(7 * 24 * 3600)
    idle = await maintenance_tick(app, "w1", chores=("outbox",))
    assert (idle.outbox_failed, idle.outbox_dead, idle.outbox_delivered) == (0, 0, 0)
    assert len(receiver.received) == policy.max_attempts + 2  # not tried again
    receiver.refuse.clear()  # the receiver is fixed; the operator replays its dead letters
    assert await app.areplay_dead_letters() == 1  # the kernel's outbox.replay_dead
    assert (await maintenance_tick(app, "w1", chores=("outbox",))).outbox_delivered == 1
    assert receiver.received[-1] == "doomed:1" and await app.adead_letters() == []
