"""Schedules: a workflow started on a cron, each tick exactly once.

A tick's run id is the schedule's name and the tick's time in UTC
(``nightly@2026-12-01T02:00:00Z``). Two workers firing the same tick, or a
worker killed between starting a tick and recording it, submit the same id,
and a run id is created once, so a tick is one run whatever happens.

The definition (cron, timezone, input, queue) lives in code; the store row
keeps what code cannot: whether an operator paused the schedule, and the time
through which its ticks were started (`fired_until`). A new schedule starts
from the moment it is first saved: it never backfills history. Nor does a
changed one: a new cron or time zone counts from the moment the change is
first seen (the old cron's last tick says nothing of the new one's).

Missed ticks (the workers were down, or the schedule fell behind) follow the
schedule's `missed` policy:

- ``"latest"`` (default): start the most recent missed tick once, drop the rest;
- ``"all"``: start every missed tick, oldest first (at most `MAX_CATCH_UP`);
- ``"skip"``: start a tick only if it is found within `LATE_AFTER` of its time.

A tick due while the schedule's last run has not ended follows `overlap`:
``"allow"`` (default) starts it beside that run; ``"skip"`` drops it (logged),
for work that must never run twice at once (a sync, a poll of a tracker).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

from ._cron_walk import ticks as _ticks
from ._names import check_name, check_queue_name
from .clock import Clock
from .definition import WorkflowDef
from .errors import InvalidArgumentError, StoreError
from .store import RunFilter, ScheduleRow, Store

__all__ = [
    "LATE_AFTER",
    "MAX_CATCH_UP",
    "MissedTicks",
    "Overlap",
    "Schedule",
    "ScheduleHost",
    "fire_schedules",
]

MissedTicks = Literal["latest", "all", "skip"]
Overlap = Literal["allow", "skip"]
# the schedule's newest runs looked at for one not ended (`overlap="skip"`)
_OVERLAP_LOOK = 20
MAX_CATCH_UP = 100
LATE_AFTER = timedelta(seconds=60)
_INCLUSIVE = timedelta(microseconds=1)  # CronSim walks strictly before its start
NO_TICK = datetime.max.replace(tzinfo=UTC)  # `Schedule.next_tick` when none is left
# a tick's run id is the name and 21 more bytes ("@2026-06-01T02:00:00Z"), within the
# 1,000 bytes a run id may have
_MAX_NAME_BYTES = 979
log = logging.getLogger("tether")
# the @-nicknames of crontab, as five fields (said in the error rather than read: a
# schedule's cron is five fields wherever it is shown)
_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class Schedule:
    """A workflow started on a cron; see `App.schedule`."""

    name: str
    workflow: str
    cron: str
    timezone: str = "UTC"
    input: Any = None
    queue: str = "default"
    missed: MissedTicks = "latest"
    overlap: Overlap = "allow"

    def __post_init__(self) -> None:
        check_name("schedule name", self.name)
        if len(self.name.encode()) > _MAX_NAME_BYTES:  # its runs are named name@<tick>
            raise InvalidArgumentError(
                f"schedule name {self.name[:40]!r}... is {len(self.name.encode())} bytes long; "
                f"keep it within {_MAX_NAME_BYTES} bytes (each run is named after it and "
                "its tick, e.g. 'nightly@2026-06-01T02:00:00Z')"
            )
        check_queue_name("queue", self.queue)
        if not isinstance(self.cron, str):
            raise InvalidArgumentError(
                f"cron must be a cron expression string such as '*/5 * * * *', got {self.cron!r}"
            )
        fields = len(self.cron.split())
        if fields != 5:  # cronsim reads six as seconds first: every second
            nickname = _NICKNAMES.get(self.cron.strip().lower())
            raise InvalidArgumentError(
                f"cron {self.cron!r} is not a valid cron expression: "
                + (
                    f"nicknames are not read; write it as {nickname!r}"
                    if nickname is not None
                    else f"it has {fields} field{'' if fields == 1 else 's'}; write five "
                    "fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *' "
                    "(a schedule runs at most once a minute)"
                )
            )
        try:
            CronSim(self.cron, datetime.now(UTC))
        except CronSimError as exc:
            raise InvalidArgumentError(_cron_error(self.cron, exc)) from None
        self.zone()
        if self.missed not in get_args(MissedTicks):
            raise InvalidArgumentError(
                f"missed must be one of 'latest', 'all', 'skip', got {self.missed!r}"
            )
        if self.overlap not in get_args(Overlap):
            raise InvalidArgumentError(
                f"overlap must be 'allow' (a tick starts beside a run of the schedule not "
                f"ended yet) or 'skip' (it is dropped), got {self.overlap!r}"
            )

    def zone(self) -> ZoneInfo:
        if self.timezone == "localtime":  # a link to /etc/localtime, read on each host
            raise InvalidArgumentError(
                "timezone 'localtime' is each host's own zone: workers on hosts set to "
                "different zones would read the cron differently and start a tick twice "
                "(under two run ids); name the zone, e.g. timezone='Europe/Berlin'"
            )
        if not isinstance(self.timezone, str):
            raise InvalidArgumentError(_zone_not_a_name(self.timezone))
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidArgumentError(_zone_unknown(self.timezone)) from None

    def tick_id(self, tick: datetime) -> str:
        """The run id of the tick at `tick` (the same in every process)."""
        return f"{self.name}@{tick.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after `after`; `NO_TICK` if the calendar ends first
        (``0 0 29 2 *`` after the year 9996 was a bare OverflowError)."""
        tick = next(_ticks(self.cron, after.astimezone(self.zone())), None)
        return NO_TICK if tick is None else tick.astimezone(UTC)

    def due(self, fired_until: datetime, now: datetime) -> tuple[list[datetime], datetime]:
        """The ticks to start now (oldest first), and the time the schedule has then
        fired through: every tick in (`fired_until`, `now`], the dropped ones included."""
        limit = MAX_CATCH_UP if self.missed == "all" else 1
        zone = self.zone()
        # where to start: walking back from now finds the oldest of the last `limit`
        # ticks, however long the workers were away. Only a bound: the backward walk
        # does not see the ticks of an hour repeated when clocks go back (fold), so
        # the ticks themselves come from the forward walk, which does (as next_tick)
        start = fired_until
        backward = _ticks(self.cron, now.astimezone(zone) + _INCLUSIVE, reverse=True)
        for back, tick in enumerate(backward, 1):
            if tick <= fired_until:
                break
            if back == limit:
                start = max(fired_until, tick.astimezone(UTC) - _INCLUSIVE)
                break
        found: deque[datetime] = deque(maxlen=limit)  # the latest `limit` of them
        for tick in _ticks(self.cron, start.astimezone(zone)):
            if tick.astimezone(UTC) > now:
                break
            found.append(tick.astimezone(UTC))
        if not found:
            return [], fired_until
        through = found[-1]
        if self.missed == "skip" and now - through > LATE_AFTER:
            return [], through
        return list(found), through

    def row(self, workflow_name: str, at: datetime) -> ScheduleRow:
        return ScheduleRow(
            name=self.name,
            workflow_name=workflow_name,
            cron=self.cron,
            timezone=self.timezone,
            queue=self.queue,
            missed=self.missed,
            paused=False,
            fired_until=at,
            created_at=at,
            updated_at=at,
        )


def _zone_not_a_name(zone: object) -> str:
    """A zone object (``ZoneInfo("Europe/Berlin")``) was said to be "not a known IANA
    time zone", as if its zone did not exist: it is the name that is wanted."""
    key = getattr(zone, "key", None)
    example = repr(key) if isinstance(key, str) else "'Europe/Berlin'"
    return (
        f"timezone takes the zone's IANA name as a string, got {zone!r} (a "
        f"{type(zone).__name__}); pass e.g. timezone={example} (the name is saved with "
        "the schedule and read by every worker)"
    )


def _zone_unknown(name: str) -> str:
    """The error for a name no zone has; the zone meant, where only its case or spaces
    are wrong ('europe/berlin': zone names are case-sensitive on Linux)."""
    said = f"timezone {name!r} is not a known IANA time zone"
    meant = [z for z in available_timezones() if z.lower() == name.strip().lower()]
    if meant:
        return f"{said}; did you mean {min(meant)!r}? (a zone's name is exact: case counts)"
    return f"{said}; pass a name such as 'UTC' or 'Europe/Berlin'"


def _cron_error(cron: str, exc: CronSimError) -> str:
    """What is wrong with `cron`. A day no month of it has ('0 0 30 2 *') was refused as
    "Bad day-of-month", which reads as a typo in a valid day."""
    minute, hour, day, month, weekday = cron.split()
    if _parses(f"{minute} {hour} {day} * {weekday}") and _parses(f"0 0 1 {month} *"):
        # every field reads alone: the days and the months never meet. A bad month
        # ('13', 'FOO') was said to be one whose days '*' never fall in
        return (
            f"cron {cron!r} would never fire: day-of-month {day!r} falls in none of the "
            f"months {month!r}; pick days those months have, or other months"
        )
    return (
        f"cron {cron!r} is not a valid cron expression ({exc}); write five "
        "fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *'"
    )


def _parses(cron: str) -> bool:
    try:
        CronSim(cron, datetime.now(UTC))
    except CronSimError:
        return False
    return True


class ScheduleHost(Protocol):
    """What firing schedules needs from the App that declared them."""

    store: Store
    clock: Clock

    @property
    def schedules(self) -> dict[str, Schedule]: ...

    def get_workflow(self, name: str) -> WorkflowDef: ...

    async def asubmit(
        self,
        workflow: Callable[..., Awaitable[Any]],
        input: Any = ...,
        *,
        workflow_id: str | None = ...,
        queue: str = ...,
        tags: Iterable[str] = ...,
    ) -> str: ...


async def fire_schedules(app: ScheduleHost) -> list[str]:
    """Start the due ticks of `app`'s schedules; the ids of the runs submitted.

    Submit first, record second: a crash in between submits the same ids again
    next time, which the store answers with the runs already there.
    """
    if not app.schedules:
        return []
    now = app.clock.now()
    rows = {r.name: r for r in await app.store.list_schedules()}
    started: list[str] = []
    for sched in app.schedules.values():
        try:
            started += await _fire(app, sched, rows.get(sched.name), now)
        except StoreError:
            raise  # the database is away: no schedule can fire now
        except Exception:  # one schedule's failure does not stop the others
            log.exception("schedule %r could not start its due runs; the others go on", sched.name)
    return started


async def _fire(
    app: ScheduleHost, sched: Schedule, row: ScheduleRow | None, now: datetime
) -> list[str]:
    """Start `sched`'s due ticks; a changed definition counts from `now` (the store
    keeps `fired_until` only while cron and time zone are unchanged)."""
    if row is None or _changed(row, sched):
        if row is not None:
            _say_changed(row, sched)
        row = await app.store.save_schedule(sched.row(sched.workflow, now))
    if row.paused:
        return []
    ticks, through = sched.due(row.fired_until, now)
    defn = app.get_workflow(sched.workflow)
    started: list[str] = []
    for tick in ticks:
        if sched.overlap == "skip" and (busy := await _running(app, sched)) is not None:
            log.info("schedule %r: tick %s skipped, run %s has not ended (overlap='skip')",
                     sched.name, sched.tick_id(tick), busy)  # fmt: skip
            continue
        try:
            started.append(
                await app.asubmit(
                    defn.fn,
                    sched.input,
                    workflow_id=sched.tick_id(tick),
                    queue=sched.queue,
                    tags=(f"schedule:{sched.name}",),
                )
            )
        except StoreError:
            raise  # nothing recorded: the next pass submits these ticks again, idempotently
        except Exception:
            # this tick cannot start (say, another deploy started it with another input):
            # skip it and move on, or it would be tried again at every pass and, with
            # missed="all", hold back every later tick of the schedule
            log.exception("schedule %r could not start its due runs: tick %s skipped",
                          sched.name, sched.tick_id(tick))  # fmt: skip
    if through > row.fired_until:
        await app.store.advance_schedule(sched.name, through, now)
    return started


async def _running(app: ScheduleHost, sched: Schedule) -> str | None:
    """A run of `sched` that has not ended (its newest first), else None."""
    where = RunFilter(tag=f"schedule:{sched.name}")
    page = await app.store.list_runs_page(where, limit=_OVERLAP_LOOK)
    return next((r.workflow_id for r in page if not r.status.terminal), None)


def _say_changed(row: ScheduleRow, sched: Schedule) -> None:
    """Log a definition replacing the saved one. Once is a deploy; again and again is two
    Apps on this database declaring one schedule name differently: each pass reset the
    other's progress and no tick of either started, with not a word in the log."""
    log.warning(
        "schedule %r is saved in this database as workflow %r, cron %r in %s, queue %r, "
        "missed=%r; this App declares workflow %r, cron %r in %s, queue %r, missed=%r and "
        "saves that instead (a new cron or time zone counts from now). If this repeats, "
        "two Apps sharing the database declare schedule %r differently and none of their "
        "ticks start: give each its own name= (each tick's run is named after it)",
        sched.name, row.workflow_name, row.cron, row.timezone, row.queue, row.missed,
        sched.workflow, sched.cron, sched.timezone, sched.queue, sched.missed, sched.name,
    )  # fmt: skip


def _changed(row: ScheduleRow, sched: Schedule) -> bool:
    return (row.workflow_name, row.cron, row.timezone, row.queue, row.missed) != (
        sched.workflow,
        sched.cron,
        sched.timezone,
        sched.queue,
        sched.missed,
    )
