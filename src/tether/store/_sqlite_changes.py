"""SQLite's stand-in for LISTEN/NOTIFY: how a waiter learns of a write soon.

SQLite has no notifications, so `wait_for_change` polls, cheaply and often
(1 ms, doubling to 8 ms; every 25 ms once no news came for a second, as for
a long-idle worker), for the two ways news can come:

- a transaction of this store that would have notified the channel (the verbs
  call `Tx.notify` as on PostgreSQL): `Notes` keeps the channels each
  committed transaction named, so a worker or an `App.result` in the process
  that wrote learns of it at the next poll;
- a commit by another connection (another process, another store object):
  ``PRAGMA data_version`` moves. Which channel it concerns is not known, so a
  cheap read decides whether it is news for the waiter's channel: a new job
  row for ``"jobs"`` (a submit, a retry); for ``"run:<id>"`` the run ended or
  parked (as PostgreSQL notifies; its claim is not news). Any other commit
  (another run's steps, say) is not, so busy neighbours do not make idle
  workers claim in a loop.

A wait still returns within `POLL_MAX` (False: nothing seen), as before, and
callers re-read what they wait for either way; a job released back to the
queue by another process is found by that re-read, not announced.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import Any

from ._sql import queries

__all__ = ["POLL_MAX", "Mark", "Notes", "mark", "wait_for_news"]

POLL_FIRST = 0.001  # seconds to the first look, doubling up to POLL_EVERY
POLL_EVERY = 0.008
QUIET_AFTER = 1.0  # with no news for this long, look only every POLL_QUIET
POLL_QUIET = 0.025
POLL_MAX = 0.05  # the longest one wait lasts: the caller then re-reads anyway
_Q = queries("sqlite")
# a run's moves between these are not news (its claim, its wake-up): "active"
_ACTIVE = {"pending": "active", "running": "active"}

# what a waiter has seen: this store's notification count, and (data_version, the
# channel's fact) as `_look` read them (None: the connection was busy)
Mark = tuple[int, tuple[int, Any] | None]


class Notes:
    """The channels this store's committed transactions notified, newest last."""

    def __init__(self) -> None:
        self.seq = 0
        self._last: dict[str, int] = {}
        self.stirred = time.monotonic()  # when news last came (own, or a waiter's)

    def add(self, channels: Iterable[str]) -> None:
        self.stirred = time.monotonic()
        for channel in channels:
            self.seq += 1
            self._last.pop(channel, None)
            self._last[channel] = self.seq
        while len(self._last) > 4096:  # the oldest channels: no waiter can want them now
            del self._last[next(iter(self._last))]

    def since(self, channel: str, seq: int) -> bool:
        """Whether `channel` was notified after `seq` (a value of `self.seq`)."""
        return self._last.get(channel, 0) > seq


def mark(conn: sqlite3.Connection, lock: threading.Lock, notes: Notes, channel: str) -> Mark:
    """What a waiter on `channel` has seen now: news is what comes after it. A worker
    marks "jobs" before it claims, so a job queued between its claim and its wait
    is news to that wait."""
    return notes.seq, _look(conn, lock, channel, None)


async def wait_for_news(
    conn: sqlite3.Connection,
    lock: threading.Lock,
    notes: Notes,
    channel: str,
    timeout: float,
    since: Mark | None = None,
) -> bool:
    """Wait at most `timeout` (and `POLL_MAX`) seconds for news for `channel`, news
    since `since` (a `mark`) or else since now."""
    if await _news(conn, lock, notes, channel, timeout, since):
        notes.stirred = time.monotonic()
        return True
    return False


async def _news(
    conn: sqlite3.Connection,
    lock: threading.Lock,
    notes: Notes,
    channel: str,
    timeout: float,
    since: Mark | None,
) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + max(0.0, min(timeout, POLL_MAX))
    seq, seen = since if since is not None else mark(conn, lock, notes, channel)
    if notes.since(channel, seq):
        return True
    if since is not None and seen is not None:  # what came between the mark and now
        now = _look(conn, lock, channel, None)
        if now is not None and now[1] != seen[1]:
            return True
        seen = now or seen
    # brisk while news comes (a result is likely soon); a long-idle worker looks seldom
    quiet = time.monotonic() - notes.stirred > QUIET_AFTER
    delay, most = (POLL_QUIET, POLL_QUIET) if quiet else (POLL_FIRST, POLL_EVERY)
    while (left := end - loop.time()) > 0:
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, most)
        if notes.since(channel, seq):
            return True
        now = _look(conn, lock, channel, seen)
        if seen is None:
            seen = now  # the first look found the connection busy: start from here
        elif now is not None and now[1] != seen[1]:
            return True
        elif now is not None:
            seen = now
    return False


def _look(
    conn: sqlite3.Connection, lock: threading.Lock, channel: str, seen: tuple[int, Any] | None
) -> tuple[int, Any] | None:
    """(data_version, the channel's fact): the fact is read only when another
    connection committed since `seen`. None while a transaction holds the
    connection (another loop's): the next poll looks again."""
    if not lock.acquire(blocking=False):
        return None
    try:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if seen is not None and version == seen[0]:
            return seen
        return version, _fact(conn, channel, version)
    except sqlite3.Error:  # closed meanwhile: nothing more to see
        return seen
    finally:
        lock.release()


def _fact(conn: sqlite3.Connection, channel: str, version: int) -> Any:
    """What another process's commit must change to be news for `channel`."""
    if channel == "jobs":
        return conn.execute(_Q["newest_job"]).fetchone()[0]
    if channel.startswith("run:"):  # as PostgreSQL notifies: the run ended or parked
        row = conn.execute(_Q["run_status_locked"], {"wid": channel[4:]}).fetchone()
        return None if row is None else _ACTIVE.get(row[0], row[0])
    return version  # any commit
