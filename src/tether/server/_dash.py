"""The dashboard: server-rendered pages under ``/`` (runs, a run, queues and
workers, usage), with their CSS and JavaScript packaged beside this module.

Pages read the served App as the API does and are let in by the same token
rules (`_dash_auth`). They work without JavaScript; with it, the runs and
queues pages refresh themselves, and a run's page follows the run's live
event stream (``/api/v1/runs/{id}/events/stream``) and redraws what changed.
"""

from __future__ import annotations

import shlex
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .._info import RunInfo
from ..store import RunFilter, RunStatus
from ._dash_auth import Viewer, keep_cookies, mount_root, page_path, without_token
from ._dash_view import (
    api_url,
    compact_json,
    cost,
    duration,
    money,
    pretty_json,
    run_url,
    when,
)
from ._deps import served_app
from ._errors import ApiError
from ._models import storable
from ._routes import decode_cursor, encode_cursor

__all__ = ["HERE", "PAGE", "SINCE", "counts", "read_cursor", "render", "runs_page", "unstorable"]

HERE = Path(__file__).parent
PAGE = 50
# the runs page's time filter: created within the last ...
SINCE: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)

ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(
    money=money,
    cost=cost,
    duration=duration,
    when=when,
    pretty_json=pretty_json,
    compact_json=compact_json,
    run_url=run_url,
    api_url=api_url,
    shell=shlex.quote,  # a name in a command to paste: a queue named 'a b' is one word
)


def render(
    request: Request, who: Viewer | None, name: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    """Template `name` as the answer, with the viewer's cookies and safe headers. A
    page knows its path as sent below the mount point (`path`), the mount point its
    links start with (`root`) and, for the sign-in form's ``next``, its address less
    any ``?token=`` (`here`, unless `context` gives another)."""
    page = ENV.get_template(name)
    root, here = mount_root(request), without_token(request)
    known = {"path": page_path(request), "root": root, "here": here, "who": who}
    html = page.render(known | context)
    response = HTMLResponse(html, status_code=status)
    if who is not None:
        keep_cookies(request, response, who)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


# -- shared by the pages ------------------------------------------------------------------


def unstorable(name: str, value: str) -> str | None:
    """Why the filter `name` cannot be `value` (the API's check of text, `storable`:
    the database would refuse it), or None if it can."""
    try:
        storable(value)
    except ValueError as exc:
        return f"{name}: {exc}"
    return None


def read_cursor(cursor: str) -> tuple[str, datetime] | None:
    """Where the page of runs of `cursor` (``?cursor=``) starts; None if it is not
    one a page gave (a browser's address bar is no API client: no 422 for it)."""
    try:
        return decode_cursor(cursor)
    except ApiError:
        return None


async def runs_page(
    request: Request, where: RunFilter, cursor: str | None
) -> tuple[list[RunInfo], str | None]:
    """One page of runs (newest first) and the cursor of the next, if any: their heads
    alone, as the list shows no input, output, state or error."""
    after = read_cursor(cursor) if cursor else None
    rows = await served_app(request).store.list_run_heads(where, limit=PAGE + 1, after=after)
    runs = [RunInfo.from_row(r) for r in rows[:PAGE]]
    return runs, encode_cursor(runs[-1]) if len(rows) > PAGE else None


async def counts(request: Request, where: RunFilter) -> list[tuple[str, int]]:
    """Runs per status under `where` (its status ignored), every status listed."""
    found: Counter[str] = Counter()
    for _, status, n in await served_app(request).store.run_counts(
        RunFilter(None, where.workflow, where.tag, where.tenant, where.created_after)
    ):
        found[status] += n
    return [(s.value, found[s.value]) for s in RunStatus]
