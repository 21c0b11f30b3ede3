"""Schedules on SQLite: the rows behind `App.schedule` (see `_port.Store`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from ._records import ScheduleRow
from ._sqlite_base import SQLiteBase, _dt, _ts

__all__ = ["ScheduleOps"]

_COLS = (
    "name, workflow_name, cron, timezone, queue, missed, paused, fired_until, created_at, "
    "updated_at"
)


def _row(r: Sequence[object]) -> ScheduleRow:
    return ScheduleRow(
        str(r[0]),
        str(r[1]),
        str(r[2]),
        str(r[3]),
        str(r[4]),
        str(r[5]),
        bool(r[6]),
        _dt(float(r[7])),  # type: ignore[arg-type]
        _dt(float(r[8])),  # type: ignore[arg-type]
        _dt(float(r[9])),  # type: ignore[arg-type]
    )


class ScheduleOps(SQLiteBase):
    async def save_schedule(self, row: ScheduleRow) -> ScheduleRow:
        def go(conn: sqlite3.Connection) -> ScheduleRow:
            def tx() -> ScheduleRow:
                conn.execute(
                    f"INSERT INTO schedules ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET workflow_name = excluded.workflow_name, "
                    "cron = excluded.cron, timezone = excluded.timezone, queue = excluded.queue, "
                    "missed = excluded.missed, updated_at = excluded.updated_at",
                    (
                        row.name,
                        row.workflow_name,
                        row.cron,
                        row.timezone,
                        row.queue,
                        row.missed,
                        int(row.paused),
                        _ts(row.fired_until),
                        _ts(row.created_at),
                        _ts(row.updated_at),
                    ),
                )
                got = conn.execute(
                    f"SELECT {_COLS} FROM schedules WHERE name = ?", (row.name,)
                ).fetchone()
                return _row(got)

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def list_schedules(self) -> list[ScheduleRow]:
        def go(conn: sqlite3.Connection) -> list[ScheduleRow]:
            rows = conn.execute(f"SELECT {_COLS} FROM schedules ORDER BY name")
            return [_row(r) for r in rows]

        return await self._call(go)

    async def pause_schedule(self, name: str, paused: bool, at: datetime) -> ScheduleRow | None:
        ts = _ts(at)

        def go(conn: sqlite3.Connection) -> ScheduleRow | None:
            def tx() -> ScheduleRow | None:
                # resuming starts from now: the ticks that fell in the pause are not run
                conn.execute(
                    "UPDATE schedules SET paused = ?, updated_at = ?, fired_until = CASE "
                    "WHEN paused = 1 AND ? = 0 THEN max(fired_until, ?) ELSE fired_until END "
                    "WHERE name = ?",
                    (int(paused), ts, int(paused), ts, name),
                )
                got = conn.execute(
                    f"SELECT {_COLS} FROM schedules WHERE name = ?", (name,)
                ).fetchone()
                return None if got is None else _row(got)

            return self._write(conn, self._full, tx)

        return await self._call(go)

    async def advance_schedule(self, name: str, fired_until: datetime, at: datetime) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            def tx() -> bool:
                cur = conn.execute(
                    "UPDATE schedules SET fired_until = ?, updated_at = ? "
                    "WHERE name = ? AND fired_until < ? AND paused = 0",
                    (_ts(fired_until), _ts(at), name, _ts(fired_until)),
                )
                return cur.rowcount == 1

            return self._write(conn, self._full, tx)

        return await self._call(go)
