"""The dashboard's forms: signal a run, complete a token, send an event, cancel a
run, and sign in. Each is a POST checked by `check_form` (same site, CSRF token,
a token of scope ``write``), answered by a redirect back to the run's page (so a
reload does not send it again), or by the page with the problem when it fails.

A form on a run's page posts to ``/runs/{id}/ACTION``, or to ``/run/ACTION?id=ID``
for an id a browser cannot send in a path (`run_url`). After a signal wakes the
run, the answer says whether anything will drive it, as `tether runs signal` does:
a worker's open job on the run, a live process that serves its workflow, or nothing."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ..errors import TetherError
from ..store import JobStatus
from ._dash import render
from ._dash_auth import LoginNeeded, check_form, same_origin, set_token_cookie
from ._dash_runs import run_page
from ._dash_view import run_url
from ._deps import granted, served_app
from ._errors import ApiError, answer_for
from ._port import ServedApp

__all__ = ["actions_router", "parse_payload"]

actions_router = APIRouter(include_in_schema=False)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def parse_payload(text: str) -> Any:
    """A form's payload: JSON if it parses (``{"ok": true}``, ``42``), else the text
    as a string (also JSON nested too deeply, or with a number too long, to read);
    nothing at all is null."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _back(workflow_id: str, done: str) -> Response:
    url = run_url(workflow_id)
    return RedirectResponse(f"{url}{'&' if '?' in url else '?'}done={done}", status_code=303)


async def _woken(app: ServedApp, workflow_id: str, code: str = "signalled") -> str:
    """The ``done`` note of a form that woke the run (`code`: which form): who, if
    anyone, drives it now."""
    run = await app.aget_run(workflow_id)
    jobs = await app.store.list_jobs(workflow_id=workflow_id)
    open_jobs = [j for j in jobs if j.status in (JobStatus.QUEUED, JobStatus.CLAIMED)]
    queue = open_jobs[0].queue if open_jobs else None
    drivers = await app.adrivers(run.workflow_name, queue)
    if queue is not None:
        return f"{code}-queued" if drivers else f"{code}-stuck"
    return code if drivers else f"{code}-idle"


async def _signal(app: ServedApp, workflow_id: str, form: dict[str, str], payload: Any) -> str:
    woken = await app.asignal(workflow_id, form.get("name", "").strip(), payload)
    return await _woken(app, workflow_id) if woken else "signal-kept"


async def _token(app: ServedApp, workflow_id: str, form: dict[str, str], payload: Any) -> str:
    owner = await app.acomplete_token(form.get("token", ""), payload)
    return await _woken(app, owner, "token")


async def _event(app: ServedApp, workflow_id: str, form: dict[str, str], payload: Any) -> str:
    woken = await app.asend_event(form.get("type", "").strip(), payload)
    return await _woken(app, workflow_id, "event") if workflow_id in woken else "event-sent"


async def _cancel(app: ServedApp, workflow_id: str, form: dict[str, str], payload: Any) -> str:
    compensate = bool(form.get("compensate"))  # a checkbox: sent only when checked
    await app.acancel(workflow_id, form.get("reason", "").strip() or None, compensate=compensate)
    return "cancelled-compensate" if compensate else "cancelled"


_Action = Callable[[ServedApp, str, dict[str, str], Any], Awaitable[str]]

#: each form's path under ``/runs/{workflow_id}/``, and what it does (its answer is
#: the ``done`` note of the page it redirects to)
_ACTIONS: dict[str, _Action] = {
    "signal": _signal,
    "complete-token": _token,
    "send-event": _event,
    "cancel": _cancel,
}


async def _act(request: Request, workflow_id: str, action: _Action) -> Response:
    """Check the form, do `action` with it, and answer."""
    form = await _form(request)
    try:
        who = await check_form(request, form, "write")
    except ApiError as exc:
        return render(request, None, "denied.html", status=exc.status, problem=exc.message)
    except LoginNeeded as exc:  # signed out meanwhile: signing in returns to the run's page
        raise LoginNeeded(exc.message, run_url(workflow_id)) from None
    app = served_app(request)
    payload = parse_payload(form.get("payload", ""))
    try:
        await app.aget_run(workflow_id)
        done = await action(app, workflow_id, form, payload)
    except TetherError as exc:
        status, _ = answer_for(exc)
        return await run_page(request, who, workflow_id, problem=str(exc), status=status)
    return _back(workflow_id, done)


def _endpoint(action: _Action) -> Callable[[Request, str], Awaitable[Response]]:
    async def endpoint(request: Request, workflow_id: str) -> Response:
        return await _act(request, workflow_id, action)

    return endpoint


def _query_endpoint(action: _Action) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:  # ?id=ID: any id, '..' too
        return await _act(request, request.query_params.get("id", ""), action)

    return endpoint


for _path, _action in _ACTIONS.items():
    actions_router.add_api_route(
        f"/runs/{{workflow_id:path}}/{_path}",
        _endpoint(_action),
        methods=["POST"],
        name=_path.replace("-", "_"),
    )
    actions_router.add_api_route(
        f"/run/{_path}",
        _query_endpoint(_action),
        methods=["POST"],
        name="run_" + _path.replace("-", "_"),
    )


def _local(path: str) -> str:
    """`path` if it is a path on this site, else ``/`` (no open redirect)."""
    return path if path.startswith("/") and not path.startswith(("//", "/\\")) else "/"


@actions_router.post("/-/login")
async def login(request: Request) -> Response:
    """The sign-in form: the token in the body (not in the address, nor in logs)."""
    form = await _form(request)
    if not same_origin(request):
        return render(request, None, "denied.html", status=403, problem="sent from another site")
    token = form.get("token", "").strip()
    back = _local(form.get("next", "/"))  # kept by the form shown again, for the next try
    if not token:
        raise LoginNeeded("paste an API token", back)
    try:
        await granted(request, token)
    except ApiError as exc:
        raise LoginNeeded(exc.message, back) from None
    response = RedirectResponse(back, status_code=303)
    set_token_cookie(request, response, token)
    return response
