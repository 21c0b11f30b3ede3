"""Schedules on PostgreSQL: the rows behind `App.schedule` (see `_port.Store`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._pg_base import Conn, PgBase
from ._records import ScheduleRow

__all__ = ["PgScheduleOps"]

_COLS = (
    "name, workflow_name, cron, timezone, queue, missed, paused, fired_until, created_at, "
    "updated_at"
)


def _row(r: Sequence[Any]) -> ScheduleRow:
    return ScheduleRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), r[7], r[8], r[9])


class PgScheduleOps(PgBase):
    async def save_schedule(self, row: ScheduleRow) -> ScheduleRow:
        got = await self._one(
            f"INSERT INTO schedules ({_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET workflow_name = excluded.workflow_name, "
            "cron = excluded.cron, timezone = excluded.timezone, queue = excluded.queue, "
            f"missed = excluded.missed, updated_at = excluded.updated_at RETURNING {_COLS}",
            (
                row.name,
                row.workflow_name,
                row.cron,
                row.timezone,
                row.queue,
                row.missed,
                row.paused,
                row.fired_until,
                row.created_at,
                row.updated_at,
            ),
        )
        return _row(got)

    async def list_schedules(self) -> list[ScheduleRow]:
        rows = await self._all(f"SELECT {_COLS} FROM schedules ORDER BY name", ())
        return [_row(r) for r in rows]

    async def pause_schedule(self, name: str, paused: bool, at: datetime) -> ScheduleRow | None:
        async def go(conn: Conn) -> ScheduleRow | None:
            # resuming starts from now: the ticks that fell in the pause are not run
            cur = await conn.execute(
                "UPDATE schedules SET paused = %(p)s, updated_at = %(at)s, fired_until = CASE "
                "WHEN paused AND NOT %(p)s THEN greatest(fired_until, %(at)s) "
                f"ELSE fired_until END WHERE name = %(name)s RETURNING {_COLS}",
                {"p": paused, "at": at, "name": name},
            )
            got = await cur.fetchone()
            return None if got is None else _row(got)

        return await self._with(go, tx=True)

    async def advance_schedule(self, name: str, fired_until: datetime, at: datetime) -> bool:
        async def go(conn: Conn) -> bool:
            cur = await conn.execute(
                "UPDATE schedules SET fired_until = %(f)s, updated_at = %(at)s "
                "WHERE name = %(name)s AND fired_until < %(f)s AND NOT paused",
                {"f": fired_until, "at": at, "name": name},
            )
            return cur.rowcount == 1

        return await self._with(go, tx=True)
