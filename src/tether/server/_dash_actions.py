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

from .._info import RunInfo
from ..errors import TetherError
from ..kernel import RunRetryCompensations
from ..store import JobStatus
from ._dash import render
from ._dash_auth import (
    LoginNeeded,
    Viewer,
    check_form,
    mount_root,
    mounted_run_url,
    same_origin,
    set_token_cookie,
)
from ._dash_runs import run_page
from ._deps import granted, served_app
from ._errors import ApiError, answer_for
from ._port import ServedApp

__all__ = ["BadPayload", "actions_router", "parse_payload"]

actions_router = APIRouter(include_in_schema=False)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


class BadPayload(ValueError):
    """A form's payload that is not JSON: the field says JSON, and such text sent on as
    a string (a brace forgotten) woke the run with a value its author never meant."""


_HOW = (
    'Write JSON: an object such as {"approved": true}, a number such as 42, or text '
    'in double quotes such as "looks good"; leave the field empty to send null.'
)


def parse_payload(text: str) -> Any:
    """A form's payload: its JSON (``{"ok": true}``, ``42``, ``"text"``), nothing at all
    being null; `BadPayload`, saying where and how to fix it, for any other text."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = (
            f"line {exc.lineno}, column {exc.colno}" if "\n" in text else f"character {exc.pos + 1}"
        )
        raise BadPayload(f"The payload is not valid JSON ({exc.msg} at {at}). {_HOW}") from None
    except RecursionError:
        raise BadPayload(
            "The payload is nested too deeply to read (arrays or objects inside one "
            "another, about a thousand levels). Send a flatter value."
        ) from None
    except ValueError:  # an integer of more digits than Python converts (4300)
        raise BadPayload(
            "The payload holds a number of more digits than can be read (at most 4300); "
            "send it as text in double quotes."
        ) from None


#: the kind of wait each form answers, and the form field that names the wait
_WAIT_OF = {"signal": ("signal", "name"), "complete-token": ("token", "token"),
            "send-event": ("event", "type")}  # fmt: skip


def _typed(path: str, form: dict[str, str], problem: str) -> dict[str, str] | None:
    """What the run's page needs to show a refused payload in the form it came from:
    the wait's kind and name (or token id), the text as typed, and the problem."""
    if path not in _WAIT_OF:
        return None
    kind, field = _WAIT_OF[path]
    text = form.get("payload", "")
    return {"kind": kind, "key": form.get(field, ""), "text": text, "problem": problem}


def _back(request: Request, workflow_id: str, done: str) -> Response:
    url = mounted_run_url(request, workflow_id)
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


async def _retry_compensations(
    app: ServedApp, workflow_id: str, form: dict[str, str], payload: Any
) -> str:
    """`App.retry_compensations`, answered at once: the served App (or a worker of its
    queue) drives the run while the page follows it."""
    await app.kernel.adispatch(RunRetryCompensations(workflow_id=workflow_id))
    return await _woken(app, workflow_id, "undo-retried")


_Action = Callable[[ServedApp, str, dict[str, str], Any], Awaitable[str]]

#: each form's path under ``/runs/{workflow_id}/``, and what it does (its answer is
#: the ``done`` note of the page it redirects to)
_ACTIONS: dict[str, _Action] = {
    "signal": _signal,
    "complete-token": _token,
    "send-event": _event,
    "cancel": _cancel,
    "retry-compensations": _retry_compensations,
}


async def _act(request: Request, workflow_id: str, path: str) -> Response:
    """Check the form, do the action at `path` with it, and answer: a payload that
    is not JSON is shown again in its form with what is wrong (422), nothing done."""
    form = await _form(request)
    try:
        who = await check_form(request, form, "write")
    except ApiError as exc:
        return render(request, None, "denied.html", status=exc.status, problem=exc.message)
    except LoginNeeded as exc:  # signed out meanwhile: signing in returns to the run's page
        raise LoginNeeded(exc.message, mounted_run_url(request, workflow_id)) from None
    app = served_app(request)
    try:
        payload = parse_payload(form.get("payload", ""))
    except BadPayload as exc:
        typed = _typed(path, form, str(exc))
        problem = None if typed else str(exc)
        return await run_page(request, who, workflow_id, problem=problem, status=422, typed=typed)
    try:
        run = await app.aget_run(workflow_id)
        if path == "cancel" and form.get("confirm") != "1":
            return _confirm_cancel(request, who, run, form)
        done = await _ACTIONS[path](app, workflow_id, form, payload)
    except TetherError as exc:
        status, _ = answer_for(exc)
        return await run_page(request, who, workflow_id, problem=str(exc), status=status)
    return _back(request, workflow_id, done)


def _confirm_cancel(request: Request, who: Viewer, run: RunInfo, form: dict[str, str]) -> Response:
    """The page that asks before a run is cancelled: one misclick on the run's page
    cancelled a run days into its work. Its form sends the run page's fields again,
    with ``confirm=1``; nothing is done until it is sent."""
    return render(
        request,
        who,
        "cancel.html",
        run=run,
        reason=form.get("reason", "").strip(),
        compensate=bool(form.get("compensate")),
        back=mounted_run_url(request, run.workflow_id),
    )


def _endpoint(path: str) -> Callable[[Request, str], Awaitable[Response]]:
    async def endpoint(request: Request, workflow_id: str) -> Response:
        return await _act(request, workflow_id, path)

    return endpoint


def _query_endpoint(path: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:  # ?id=ID: any id, '..' too
        return await _act(request, request.query_params.get("id", ""), path)

    return endpoint


for _path in _ACTIONS:
    actions_router.add_api_route(
        f"/runs/{{workflow_id:path}}/{_path}",
        _endpoint(_path),
        methods=["POST"],
        name=_path.replace("-", "_"),
    )
    actions_router.add_api_route(
        f"/run/{_path}",
        _query_endpoint(_path),
        methods=["POST"],
        name="run_" + _path.replace("-", "_"),
    )


def _local(path: str, root: str) -> str:
    """`path` if it is a path on this site, else the dashboard's home, `root` ``/``
    (no open redirect)."""
    return path if path.startswith("/") and not path.startswith(("//", "/\\")) else root + "/"


@actions_router.get("/-/login")
async def login_page(request: Request, next: str = "", out: str = "") -> Response:
    """The sign-in page at its own address: where a browser signed in with a ``read``
    token goes to sign in with a ``write`` one (it had no way to), what the address
    a failed sign-in leaves in the bar shows when loaded again (it was a JSON 405), and
    where signing out lands (``?out=1``: it says so)."""
    here = _local(next, mount_root(request))
    return render(request, None, "login.html", problem=None, here=here, signed_out=bool(out))


@actions_router.post("/-/login")
async def login(request: Request) -> Response:
    """The sign-in form: the token in the body (not in the address, nor in logs)."""
    form = await _form(request)
    if not same_origin(request):
        return render(request, None, "denied.html", status=403, problem="sent from another site")
    token = form.get("token", "").strip()
    # kept by the form shown again, for the next try
    back = _local(form.get("next", ""), mount_root(request))
    if not token:
        raise LoginNeeded("paste an API token", back)
    try:
        await granted(request, token)
    except ApiError as exc:
        raise LoginNeeded(exc.message, back) from None
    response = RedirectResponse(back, status_code=303)
    set_token_cookie(request, response, token)
    return response
