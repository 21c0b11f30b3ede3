"""Schedule verbs: the rows behind `App.schedule`."""

from __future__ import annotations

from datetime import datetime

from ._base import StoreBase, Tx, params
from ._records import ScheduleRow
from ._rows import Rows

__all__ = ["ScheduleVerbs"]


class ScheduleVerbs(StoreBase):
    async def save_schedule(self, row: ScheduleRow) -> ScheduleRow:
        """Insert a schedule, or update its definition (workflow, cron, timezone, queue,
        missed-tick policy) keeping whether it is paused, and how far it has fired
        unless its cron or time zone changed (then `row.fired_until`: from now).
        """

        async def body(tx: Tx) -> ScheduleRow:
            await tx.execute("save_schedule", **params(row))  # parameters named as its fields
            return tx.rows.schedule(await tx.one("schedule_by_name", name=row.name))

        return await self._tx("write", body)

    async def list_schedules(self) -> list[ScheduleRow]:
        """Every schedule, by name."""

        return await self._list("list_schedules", Rows.schedule)

    async def pause_schedule(self, name: str, paused: bool, at: datetime) -> ScheduleRow | None:
        """Pause or resume; resuming moves `fired_until` to `at`, so the ticks that fell
        in the pause are not started. None if there is no such schedule.
        """

        async def body(tx: Tx) -> ScheduleRow | None:
            # resuming starts from now: the ticks that fell in the pause are not run
            await tx.execute("pause_schedule", name=name, paused=paused, at=at)
            row = await tx.one("schedule_by_name", name=name)
            return None if row is None else tx.rows.schedule(row)

        return await self._tx("write", body)

    async def delete_schedule(self, name: str) -> bool:
        """Forget a schedule no App declares any more (its runs are kept); False if there
        is none. An App still declaring it saves it again, counting from then."""

        return await self._execute("write", "delete_schedule", name=name) == 1

    async def advance_schedule(self, name: str, fired_until: datetime, at: datetime) -> bool:
        """Record that every tick up to `fired_until` is started (compare-and-set: False
        if the schedule already fired that far, or is paused).
        """

        return (
            await self._execute("write", "advance_schedule", name=name, fired=fired_until, at=at)
            == 1
        )
