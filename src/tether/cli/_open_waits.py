"""What a parked run waits for, as `runs show` and `tether run` tell it: each open
wait, since when, when it times out, and the command that answers it."""

from __future__ import annotations

import json
import shlex
from typing import Any

from rich.table import Table

from .._info import WaitInfo
from .._iso_time import iso_z
from ..store import WaitKind, WaitStatus
from ._format import row, table, ts, zoned

__all__ = ["open_waits", "send_command", "waits_dicts", "waits_table"]


def open_waits(waits: list[WaitInfo]) -> list[WaitInfo]:
    """The waits still pending: those resolved, timed out or cancelled wait no more."""
    return [w for w in waits if w.status is WaitStatus.PENDING]


def send_command(w: WaitInfo, rid: str, db: str) -> str | None:
    """The command that answers `w` (a signal, an event, a token), with the `db` flag it
    needs to find the run; None for a timer (it wakes when due) and a child run (it
    ends). `rid` is the run's id, quoted for a shell."""
    if w.kind is WaitKind.SIGNAL:
        return f"tether runs signal {rid} {shlex.quote(w.name or '')}{db}"
    if w.kind is WaitKind.EVENT:
        return f"tether runs event {shlex.quote(w.name or '')}{db}"
    if w.kind is WaitKind.TOKEN:
        return f"tether runs complete-token {w.id}{db}"
    return None


def _answer(w: WaitInfo, rid: str, db: str) -> str:
    """How `w` is answered, for a person: the command with its payload option, or
    what ends a timer's or a child run's wait."""
    command = send_command(w, rid, db)
    if command is not None:
        return f"{command} --payload JSON"
    if w.kind is WaitKind.TIMER:
        return "none: a worker or `tether serve --app` wakes it when due"
    child = shlex.quote(w.name or "")
    return f"none: it ends with child run {w.name} (`tether runs show {child}{db}`)"


def _waited_for(w: WaitInfo) -> str:
    """The wait's key, and the payload fields an event must match, if any."""
    return w.key if w.match is None else f"{w.key} matching {w.match}"


def waits_table(waits: list[WaitInfo], rid: str, db: str) -> Table:
    """`runs show`'s open waits: a row each (a block each on a narrow terminal)."""
    t = table("wait", "kind", zoned("since"), zoned("times out"), "answer with", words=True)
    t.title = f"open waits ({len(waits)})"
    for w in waits:
        kind = "child run" if w.kind is WaitKind.RUN else w.kind.value
        row(t, _waited_for(w), kind, ts(w.created_at), ts(w.due_at), _answer(w, rid, db))
    return t


def waits_dicts(waits: list[WaitInfo], rid: str, db: str) -> list[dict[str, Any]]:
    """The open waits as `runs show --json` gives them (`answer`: the command that
    answers the wait, without its --payload; null for a timer and a child run)."""
    return [
        {
            "id": w.id,
            "key": w.key,
            "kind": w.kind.value,
            "name": w.name,
            "match": None if w.match is None else json.loads(w.match),
            "createdAt": iso_z(w.created_at),
            "dueAt": iso_z(w.due_at),
            "answer": send_command(w, rid, db),
        }
        for w in waits
    ]
