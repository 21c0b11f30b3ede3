"""Schedule verbs: the rows behind `App.schedule`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from ._base import StoreBase, Tx
from ._records import ScheduleRow

__all__ = ["ScheduleVerbs"]


def _schedule(tx: Tx, r: Sequence[Any]) -> ScheduleRow:
    return ScheduleRow(
        name=r[0],
        workflow_name=r[1],
        cron=r[2],
        timezone=r[3],
        queue=r[4],
        missed=r[5],
        paused=bool(r[6]),
        fired_until=tx.rows.t(r[7]),
        created_at=tx.rows.t(r[8]),
        updated_at=tx.rows.t(r[9]),
    )


class ScheduleVerbs(StoreBase):
    async def save_schedule(self, row: ScheduleRow) -> ScheduleRow:
        """Insert a schedule, or update its definition (workflow, cron, timezone, queue,
        missed-tick policy) keeping whether it is paused and how far it has fired.
        """

        async def body(tx: Tx) -> ScheduleRow:
            await tx.execute("save_schedule", **asdict(row))  # parameters named as its fields
            return _schedule(tx, await tx.one("schedule_by_name", name=row.name))

        return await self._tx("write", body)

    async def list_schedules(self) -> list[ScheduleRow]:
        """Every schedule, by name."""

        async def body(tx: Tx) -> list[ScheduleRow]:
            return [_schedule(tx, r) for r in await tx.all("list_schedules")]

        return await self._tx("read", body)

    async def pause_schedule(self, name: str, paused: bool, at: datetime) -> ScheduleRow | None:
        """Pause or resume; resuming moves `fired_until` to `at`, so the ticks that fell
        in the pause are not started. None if there is no such schedule.
        """

        async def body(tx: Tx) -> ScheduleRow | None:
            # resuming starts from now: the ticks that fell in the pause are not run
            await tx.execute("pause_schedule", name=name, paused=paused, at=at)
            row = await tx.one("schedule_by_name", name=name)
            return None if row is None else _schedule(tx, row)

        return await self._tx("write", body)

    async def advance_schedule(self, name: str, fired_until: datetime, at: datetime) -> bool:
        """Record that every tick up to `fired_until` is started (compare-and-set: False
        if the schedule already fired that far, or is paused).
        """

        async def body(tx: Tx) -> bool:
            return await tx.execute("advance_schedule", name=name, fired=fired_until, at=at) == 1

        return await self._tx("write", body)
