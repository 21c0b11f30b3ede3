"""What a parked run waits for, as `runs show` and `tether run` tell it: each open
wait, since when, when it times out, and the command that answers it (of a run read
through a server, the HTTP request)."""

from __future__ import annotations

import json
import shlex
from typing import Any, NamedTuple

from rich.console import Group, RenderableType
from rich.text import Text

from .._info import WaitInfo
from .._iso_time import iso_z
from ..store import WaitKind, WaitStatus, redact
from ._format import row, table, ts, zoned

__all__ = ["Answering", "open_waits", "send_command", "waits_dicts", "waits_table"]


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


class Answering(NamedTuple):
    """Where the run was read, for what answers its waits: `flag` finds it again in a
    `tether runs` command (`` --db URL``, `` --server URL`` or ""); `server`, the URL of
    the server it was read through, whose waits HTTP requests answer (`tether runs
    signal|event|complete-token` write to a database and take no --server)."""

    workflow_id: str
    flag: str
    server: str | None = None


def _request(w: WaitInfo, to: Answering, *, payload: bool) -> str | None:
    """The HTTP request that answers `w` on `to.server`: method, URL and JSON body (with
    `payload`, ``"payload": JSON`` in it; without, the payload is null); None as in
    `send_command`. The clients' own `Calls` build it, the paths theirs."""
    from ..server import Call, Calls

    calls, name = Calls(), w.name or ""
    call: Call[Any]
    if w.kind is WaitKind.SIGNAL:
        call = calls.signal(to.workflow_id, name)
    elif w.kind is WaitKind.EVENT:
        call = calls.send_event(name)
    elif w.kind is WaitKind.TOKEN:
        call = calls.complete_token(w.id)
    else:
        return None
    body = [f"{_js(k)}: {_js(v)}" for k, v in (call.body or {}).items() if k != "payload"]
    body += ['"payload": JSON'] if payload else []
    return f"{call.method} {redact(to.server or '').rstrip('/')}{call.path} {{{', '.join(body)}}}"


def _js(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _answered_by(w: WaitInfo, to: Answering, *, payload: bool = False) -> str | None:
    """The command (a served run's: the HTTP request) that answers `w`, with
    ``--payload JSON`` (or its body's ``"payload": JSON``) if `payload`."""
    if to.server is not None:
        return _request(w, to, payload=payload)
    command = send_command(w, shlex.quote(to.workflow_id), to.flag)
    return command if command is None or not payload else f"{command} --payload JSON"


def _answer(w: WaitInfo, to: Answering) -> str:
    """How `w` is answered, for a person: the command with its payload option, or
    what ends a timer's or a child run's wait."""
    answer = _answered_by(w, to, payload=True)
    if answer is not None:
        return answer
    if w.kind is WaitKind.TIMER:
        return "none: a worker or `tether serve --app` wakes it when due"
    child = shlex.quote(w.name or "")
    return f"none: it ends with child run {w.name} (`tether runs show {child}{to.flag}`)"


def _waited_for(w: WaitInfo) -> str:
    """The wait's key, and the payload fields an event must match, if any."""
    return w.key if w.match is None else f"{w.key} matching {w.match}"


def waits_table(waits: list[WaitInfo], to: Answering) -> RenderableType:
    """`runs show`'s open waits: a row each (a block each on a narrow terminal); a
    served run's with a line saying its answers are HTTP requests, and why."""
    t = table("wait", "kind", zoned("since"), zoned("times out"), "answer with", words=True)
    t.title = f"open waits ({len(waits)})"
    for w in waits:
        kind = "child run" if w.kind is WaitKind.RUN else w.kind.value
        row(t, _waited_for(w), kind, ts(w.created_at), ts(w.due_at), _answer(w, to))
    if to.server is None or all(_answered_by(w, to) is None for w in waits):
        return t
    return Group(t, Text(_SERVED_NOTE, "dim"))


_SERVED_NOTE = (
    "send these requests to the server (with `Authorization: Bearer TOKEN` if it asks for "
    "a token): `tether runs signal`, `event` and `complete-token` take --db, not --server"
)


def waits_dicts(waits: list[WaitInfo], to: Answering) -> list[dict[str, Any]]:
    """The open waits as `runs show --json` gives them (`answer`: the command that
    answers the wait, without its --payload, or for a served run the HTTP request, a
    null payload; null for a timer and a child run)."""
    return [
        {
            "id": w.id,
            "key": w.key,
            "kind": w.kind.value,
            "name": w.name,
            "match": None if w.match is None else json.loads(w.match),
            "createdAt": iso_z(w.created_at),
            "dueAt": iso_z(w.due_at),
            "answer": _answered_by(w, to),
        }
        for w in waits
    ]
