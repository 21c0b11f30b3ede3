"""The Store port: the domain verbs the engine needs from a database.

`Store` is the verbs themselves: they are written once, against a dialect's
transactions (`_base.Tx`), in ``_verbs_*.py`` and documented there; an adapter
(`SQLiteStore`, `PostgresStore`) adds its transactions (`_tx`), `open`, `close`
and `wait_for_change`, and may run a verb's body as fewer statements (the hot
paths of PostgreSQL) without restating the verb. Something that answers only
some verbs for a runtime (the remote tenant's `JournalStore`, a test's wrapper)
is cast to `Store`.

Every mutating verb is one transaction that writes the change *and* the
events it causes, or nothing. Verbs that write for a run take a `Fence`; when
its generation is set, the write lands only if the run's owner generation
still equals it, else `StaleOwnerError` is raised and nothing is written.

Times: `at` stamps records and events (the engine's clock). `now` judges lock
expiry; `None` means the store's own clock (the database server's, on
PostgreSQL), so machines with skewed clocks agree on who holds a lock.

Driver errors never cross this port: adapters raise `StoreError` and its
subclasses.
"""

from __future__ import annotations

import abc

from ._migrations import pending
from ._verbs_ai import AIVerbs
from ._verbs_api import ApiVerbs
from ._verbs_blobs import BlobVerbs
from ._verbs_metrics import MetricVerbs
from ._verbs_queue import QueueVerbs
from ._verbs_runs import RunVerbs
from ._verbs_schedules import ScheduleVerbs
from ._verbs_waits import WaitVerbs

__all__ = ["Store"]


class Store(
    RunVerbs, WaitVerbs, QueueVerbs, ScheduleVerbs, AIVerbs, BlobVerbs, ApiVerbs, MetricVerbs
):
    """A durable home for runs, steps, events, locks and heartbeats."""

    url: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The version of the newest migration applied to the database."""

    async def check_schema(self) -> None:
        """`IncompatibleStoreError` if a newer tether has migrated the database since
        this store opened it (a rolling deploy: a process of the old release must step
        aside, or it writes what the new schema means otherwise)."""
        pending(self.dialect, await self.schema_version(), "the database")

    @abc.abstractmethod
    async def wait_for_change(self, channel: str, timeout: float) -> bool:
        """Wait (at most `timeout` s) for a write that concerns `channel`.

        Channels: ``"jobs"`` (work became available) and ``"run:<id>"`` (the
        run ended or parked). True when woken by such a write; False on
        timeout. PostgreSQL wakes at once (LISTEN/NOTIFY); SQLite looks every few
        milliseconds and returns within 50 ms; a caller re-reads what it waits for
        either way.
        """
