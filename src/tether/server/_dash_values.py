"""A run's values on the dashboard: a bounded preview on the page, the whole value a
link away.

A run's input, output or state, or an event's detail, can be megabytes (a document
pipeline's text): its page sent and drew all of it, again at each event of a live run
(the page re-reads itself). The page shows the first `DATA_CHARS` characters of a value
(`EVENT_CHARS` of an event's detail or message, in the events table and in the live
stream), says how large the whole is and links to ``/run/value?id=ID&part=PART``, which
answers the whole value as JSON (``part=event&seq=N``: the whole event, as the API
lists it). The address takes the id in its query, so it reaches any id (``..`` too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..record import EventRecord, RunRecord
from ._dash import unstorable
from ._dash_auth import Viewer, viewer
from ._dash_view import compact_json, pretty_json
from ._deps import served_app
from ._errors import error_body
from ._models import Event
from ._sse import sse_frame

__all__ = [
    "DATA_CHARS",
    "ERROR_CHARS",
    "EVENT_CHARS",
    "PARTS",
    "Preview",
    "ShownEvent",
    "data_preview",
    "error_notes",
    "event_preview",
    "live_frame",
    "preview",
    "shown_events",
    "value_url",
    "values_router",
]

DATA_CHARS = 4_000  # of a run's input, output, state: a screenful or two
EVENT_CHARS = 300  # of an event's detail or message: a few lines of its table's cell
# of a last error's message (and of each cause's), in the run's summary: a traceback of
# hundreds of lines, or 50 KB of text, whole behind its toggle; a quoted document, not
ERROR_CHARS = 100_000
#: the parts of a run that ``/run/value`` answers whole, each as the run's record has it
Part = Literal["input", "output", "state", "error", "event"]
PARTS: tuple[Part, ...] = ("input", "output", "state", "error")

values_router = APIRouter(include_in_schema=False)
Who = Annotated[Viewer, Depends(viewer)]


def _size(n: int) -> str:
    """Bytes, as a reader thinks of them."""
    if n < 1024:
        return f"{n:,} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:,.1f} KiB"
    return f"{n / (1024 * 1024):,.1f} MiB"


@dataclass(frozen=True)
class Preview:
    """The beginning of a value's text, and how large the whole of it is: `cut` when
    `text` is not all of it (its whole is at `href`)."""

    text: str
    cut: bool
    chars: int  # of the whole value's text
    size: str  # of its JSON, as the link answers it
    href: str

    @property
    def note(self) -> str:
        """What the preview leaves out, in words."""
        return f"the first {len(self.text):,} of {self.chars:,} characters ({self.size} of JSON)"


def preview(text: str, limit: int, href: str, whole: str | None = None) -> Preview:
    """The first `limit` characters of `text` (a value written out); `whole` is its JSON
    as the link answers it (`text` if None), whose size the preview states."""
    full = text if whole is None else whole
    return Preview(
        text[:limit],
        len(text) > limit,
        len(text),
        _size(len(full.encode("utf-8", "replace"))),
        href,
    )


def value_url(workflow_id: str, part: Part, seq: int | None = None) -> str:
    """The address of a run's value whole (``part=event``: the event numbered `seq`)."""
    tail = "" if seq is None else f"&seq={seq}"
    return f"/run/value?id={quote(workflow_id, safe='')}&part={part}{tail}"


def data_preview(rec: RunRecord, part: Part) -> Preview:
    """The run page's preview of its input, output, state or last error."""
    value = _part_of(rec, part)
    text = pretty_json(value)
    return preview(text, DATA_CHARS, value_url(rec.workflow_id, part), compact_json(value))


def event_preview(workflow_id: str, seq: int, text: str) -> Preview:
    """An event's detail (or message) as its row shows it; the whole event at the link."""
    return preview(text, EVENT_CHARS, value_url(workflow_id, "event", seq))


def error_notes(rec: RunRecord) -> dict[str, Any]:
    """What a run page's summary needs to cut its last error's messages: the limit, the
    longest message past it (0: none is), and the address of the whole error."""
    err = rec.last_error
    longest = 0 if err is None else max(len(e.message) for e in err.causes())
    return {
        "error_chars": ERROR_CHARS,
        "error_clipped": longest if longest > ERROR_CHARS else 0,
        "error_href": value_url(rec.workflow_id, "error"),
    }


@dataclass(frozen=True)
class ShownEvent:
    """An event as the run page's table shows it: its message and detail as previews
    (None: it has none)."""

    seq: int
    at: datetime
    type: str
    message: Preview | None
    detail: Preview | None


def shown_events(workflow_id: str, events: Sequence[EventRecord]) -> list[ShownEvent]:
    """The rows of a run page's events table."""

    def cell(e: EventRecord, text: str | None) -> Preview | None:
        return None if text is None else event_preview(workflow_id, e.seq, text)

    return [
        ShownEvent(e.seq, e.at, e.type, cell(e, e.message), cell(e, _detail_text(e.detail)))
        for e in events
    ]


def live_frame(workflow_id: str, event: Event) -> bytes:
    """A Server-Sent Event of the run's page: the API's frame, but a detail or message
    longer than its row shows is sent as its preview (``detail_preview``,
    ``message_preview``: text, size, href), not whole: a live page received every
    megabyte of it, each time."""
    texts = {"message": event.message, "detail": _detail_text(event.detail)}
    long = {k: t for k, t in texts.items() if t is not None and len(t) > EVENT_CHARS}
    if not long:
        return sse_frame(event)
    cut = {k: None for k in long}
    data: dict[str, Any] = json.loads(event.model_copy(update=cut).model_dump_json())
    for field, text in long.items():
        shown = event_preview(workflow_id, event.seq, text)
        data[f"{field}_preview"] = {
            "text": shown.text,
            "note": shown.note,
            "size": shown.size,
            "href": shown.href,
        }
    return sse_frame(event, json.dumps(data))


def _detail_text(detail: Any) -> str | None:
    return None if detail is None else compact_json(detail)


def _part_of(rec: RunRecord, part: str) -> Any:
    if part == "error":
        return None if rec.last_error is None else rec.last_error.to_dict()
    value: Any = getattr(rec, part)
    return value


def _json(value: Any, status: int = 200) -> Response:
    body = compact_json(value)  # the JSON whose size the page stated
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


def _problem(status: int, code: str, message: str) -> Response:
    """An error answer, shaped as the API's."""
    return _json(error_body(code, message), status)


async def _event(request: Request, workflow_id: str) -> Response:
    given = request.query_params.get("seq", "")
    if not (given.isascii() and given.isdigit() and 0 < len(given) < 19 and int(given) > 0):
        return _problem(
            422, "invalid_seq", f"seq must be an event's number (1 or more), got {given!r}"
        )
    seq = int(given)
    rows = await served_app(request).store.list_events(workflow_id, after_seq=seq - 1, limit=1)
    if not rows or rows[0].seq != seq:
        return _problem(404, "event_not_found", f"run {workflow_id!r} has no event {seq}")
    return Response(
        Event.of(EventRecord.from_row(rows[0])).model_dump_json(),
        media_type="application/json",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


@values_router.get("/run/value")
async def run_value(request: Request, _: Who) -> Response:
    """A run's value whole, as JSON: what its page shows the beginning of."""
    workflow_id = request.query_params.get("id", "")
    part = request.query_params.get("part", "")
    if part not in (*PARTS, "event"):
        choices = ", ".join((*PARTS, "event"))
        return _problem(422, "invalid_part", f"part must be one of {choices}; got {part!r}")
    if not workflow_id:
        return _problem(422, "missing_id", "give the run's id: /run/value?id=ID&part=PART")
    stored = unstorable("id", workflow_id) is None
    run = await served_app(request).store.get_run(workflow_id) if stored else None
    if run is None:
        return _problem(404, "run_not_found", f"no run has the id {workflow_id!r}")
    if part == "event":
        return await _event(request, workflow_id)
    # the run's row alone, read as its record reads it (no steps, no events: not needed)
    return _json(_part_of(RunRecord.build(run, [], [], [], []), part))
