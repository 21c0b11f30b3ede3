"""The ASGI application: `create_app(app)` (also `App.asgi()`), served by `tether serve`.

It drives the App's async API on the server's own event loop: runs started
through it are driven in the server process (or queued for workers when a
queue is named), and the App is closed when the server shuts down.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match

from .. import __version__
from .._signatures import HookRejected, Webhook
from ..errors import InvalidArgumentError, TetherError
from ._dashboard import install_dashboard, page_failed, page_not_found
from ._deps import ServerConfig
from ._edge import Edge
from ._errors import (
    ApiError,
    answer_for,
    challenge,
    details_for,
    error_body,
    named,
    unreadable_json,
)
from ._hooks_route import hooks
from ._metrics_route import metrics
from ._models import ERRORS
from ._port import ServedApp
from ._query import meant
from ._routes import api_router, record_router
from ._routes_ops import ops_router
from ._sse import Streams

__all__ = ["ServerConfig", "create_app", "webhooks_from_env"]


def _body_fields(request: Request) -> list[str]:
    """The fields of the body model of the route `request` matched (none if it has none)."""
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    for model in (annotation, *get_args(annotation)):  # an optional body: `Model | None`
        fields = getattr(model, "model_fields", None)
        if isinstance(fields, dict):
            return list(fields)
    return []


def _unknown_field(name: str, fields: list[str]) -> str:
    """Why a body field was refused, naming the field meant if it can be guessed."""
    hint = meant(name, fields, "fields")
    if hint is not None:
        return f"unknown field; {hint}"
    return f"unknown field; known: {', '.join(fields)}" if fields else "unknown field"


# a time whose "+01:00" came through a URL unencoded: a '+' in a query reads as a space
_LOST_PLUS = re.compile(r"\d \d{2}(:?\d{2})?$")


def _lost_plus(e: Any) -> str:
    """A hint for a query time refused for the space its unencoded '+' became (``curl
    '...?since=2026-12-01T00:00:00+01:00'``): the error said only "unexpected extra
    characters", and the time looked right as typed."""
    given = e.get("input")
    if tuple(e["loc"][:1]) != ("query",) or not e["type"].startswith("datetime"):
        return ""
    if not isinstance(given, str) or not _LOST_PLUS.search(given):
        return ""
    return (
        "; a '+' in a URL reads as a space: send the offset's '+' as %2B (e.g. "
        "2026-12-01T00:00:00%2B01:00), or give the time in UTC with Z"
    )


def _problem(e: Any, fields: list[str], content_type: str | None) -> dict[str, Any]:
    loc = e["loc"]
    message = e["msg"] + _lost_plus(e)
    if e["type"] == "extra_forbidden" and len(loc) == 2 and loc[0] == "body":
        message = _unknown_field(str(loc[1]), fields)
    if tuple(loc) == ("body",) and isinstance(e.get("input"), bytes):
        message = _not_json(content_type)
    elif tuple(loc) == ("body",) and e["type"] in _NOT_AN_OBJECT:
        message = _not_an_object(e.get("input"), fields)
    if e["type"] == "json_invalid" and len(loc) == 2 and loc[0] == "body":
        # FastAPI's "body.30: JSON decode error" named a field "30" and no reason
        why = (e.get("ctx") or {}).get("error") or "a syntax error"
        message = f"not valid JSON: {why} at character {loc[1]} of the body; send valid JSON"
        loc = ("body",)
    return {"field": ".".join(str(p) for p in loc), "message": message, "type": e["type"]}


# pydantic's words for a body that is no JSON object: none at all, or another value
_NOT_AN_OBJECT = ("missing", "model_attributes_type", "dict_type", "model_type")


def _not_an_object(given: Any, fields: list[str]) -> str:
    """Why a body that is no JSON object was refused: FastAPI said "Field required" of
    an empty one and "a valid dictionary or object to extract fields from" of ``[]``
    or ``null``, and named neither what came nor what to send."""
    sent = (
        "no body (or null)" if given is None else f"a JSON {_JSON_KINDS.get(type(given), 'value')}"
    )
    keys = f" (its fields: {', '.join(fields)})" if fields else ""
    return f"the body must be a JSON object{keys}, and it came with {sent}; send an object"


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}


def _not_json(content_type: str | None) -> str:
    """Why a body sent as another type was refused: FastAPI reads a body as JSON only
    when its Content-Type says JSON, and said of one sent by ``curl -d`` (a form's
    type) that the "input should be a valid dictionary", which pointed nowhere."""
    sent = "no Content-Type" if not content_type else f"Content-Type {content_type!r}"
    return (
        f"the body must be JSON sent with Content-Type: application/json, and it came with "
        f"{sent}; send that header (curl: -H 'Content-Type: application/json')"
    )


def _problems(exc: RequestValidationError, request: Request) -> tuple[str, list[dict[str, Any]]]:
    fields, sent = _body_fields(request), request.headers.get("content-type")
    details = [_problem(e, fields, sent) for e in exc.errors()]
    return f"invalid request: {named(details)}", details


_BODY_PARSE = "There was an error parsing the body"  # FastAPI's 400 for these


def _unreadable(exc: HTTPException) -> str | None:
    """Why a JSON body could not be read, if `exc` is FastAPI's 400 for one that
    is not a plain syntax error (those are a 422 already): None for other errors."""
    cause = exc.__cause__
    if exc.status_code != 400 or exc.detail != _BODY_PARSE or cause is None:
        return None
    return unreadable_json(cause)


def _said(request: Request, exc: HTTPException) -> str:
    """The message of an HTTP error: for a path no route takes, which path and where the
    routes are listed (Starlette said "Not Found", which a program's author could not
    tell from a run that was not found)."""
    if exc.status_code != 404 or exc.detail != "Not Found":
        return str(exc.detail)
    # the app's own mount point: in a mounted app's scope (the static files') the
    # root_path is that app's (it said the routes were under /-/static/api/v1/)
    root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    return (
        f"no route takes {request.method} {request.url.path}; the API's routes are under "
        f"{root}/api/v1/ and listed in {root}/api/v1/openapi.json"
    )


def _allowed(request: Request, exc: HTTPException) -> list[str]:
    """The methods the path takes: those of every route it matches (GET and POST
    /api/v1/runs are two routes), or those a mounted app named (the static files')."""
    methods = [
        method
        for method in ("DELETE", "GET", "HEAD", "POST", "PUT", "PATCH")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]
    # none matched: the path is a mount's (its scope is the mounted app's); its Allow
    # then names them (a route's names its own methods alone, not the path's)
    given = (exc.headers or {}).get("Allow") or ""
    methods = methods or [m.strip() for m in given.split(",") if m.strip()]
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")  # `Edge` answers a HEAD as the GET
    return sorted({*methods, "OPTIONS"})  # OPTIONS: answered here, for any path routed


def _not_allowed(request: Request, exc: HTTPException) -> Response:
    """405, with the methods the path takes in ``Allow`` (as HTTP requires) and in words
    (Starlette named the first route's alone, in a bare "Method Not Allowed"); to an
    OPTIONS, which asks just that (RFC 9110), 204 with ``Allow``: it was a 405 saying
    OPTIONS was not allowed. A CORS preflight never comes here: the CORS middleware,
    when configured, answers it first."""
    methods = _allowed(request, exc)
    allowed = ", ".join(methods)
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allowed})
    message = f"{request.method} is not allowed at {request.url.path}; it takes {allowed}"
    return JSONResponse(
        error_body("method_not_allowed", message, {"allowed": methods}),
        status_code=405,
        headers={"Allow": allowed},
    )


async def _on_api(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status,
        headers=challenge(exc.status, exc.code),  # a 401's WWW-Authenticate
    )


def _install_handlers(api: FastAPI) -> None:
    async def on_tether(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TetherError)
        status, code = answer_for(exc)
        page = page_failed(request, status, str(exc)) if status >= 500 else None
        if page is not None:  # a dashboard page a browser asked for
            return page
        return JSONResponse(error_body(code, str(exc), details_for(exc)), status_code=status)

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, details = _problems(exc, request)
        # json round trip: pydantic's error context may hold values JSON cannot
        safe = json.loads(json.dumps(details, default=str))
        return JSONResponse(error_body("invalid_request", message, safe), status_code=422)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        why = _unreadable(exc)
        if why is not None:
            problem = {"field": "body", "message": why, "type": "json_invalid"}
            return JSONResponse(
                error_body("invalid_request", f"invalid request: body: {why}", [problem]),
                status_code=422,
            )
        page = page_not_found(request) if exc.status_code == 404 else None
        if page is not None:
            return page
        if exc.status_code == 405:
            return _not_allowed(request, exc)
        code = {404: "not_found"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, _said(request, exc)), status_code=exc.status_code, headers=exc.headers
        )

    async def on_hook(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HookRejected)
        return JSONResponse(error_body(exc.code, str(exc)), status_code=exc.status)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # answered by Starlette's outermost middleware, which then raises `exc` again
        # for the server to log with its traceback
        message = (
            f"the server failed to answer {request.method} {request.url.path} "
            f"({type(exc).__name__}): a bug, not a problem with the request. The server's "
            "log has the traceback; please report it"
        )
        return page_failed(request, 500, message) or JSONResponse(
            error_body("internal", message), status_code=500
        )

    api.add_exception_handler(Exception, on_unexpected)
    api.add_exception_handler(ApiError, _on_api)
    api.add_exception_handler(TetherError, on_tether)
    api.add_exception_handler(RequestValidationError, on_invalid)
    api.add_exception_handler(HTTPException, on_http)
    api.add_exception_handler(HookRejected, on_hook)


def create_app(app: ServedApp, config: ServerConfig | None = None) -> Any:
    """The ASGI application serving `app`: the API under ``/api/v1`` (its OpenAPI
    document at ``/api/v1/openapi.json``), webhooks under ``/hooks/{name}``, and the
    dashboard's pages under ``/``. A server shutting it down should first call
    ``asgi.state.tether_streams.close()`` (safe in a signal handler), or open event
    streams hold the shutdown up."""
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # the runs this server starts are driven here: wake their timers, take up
        # those a stopped server handed back (no worker needed for either)
        chores = asyncio.ensure_future(app.ahost_chores()) if config.host_chores else None
        try:
            yield
        finally:
            if chores is not None:
                chores.cancel()
                await asyncio.gather(chores, return_exceptions=True)
            await app.aclose()

    api = FastAPI(
        title="tether",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the interactive pages load scripts from a CDN: not by default
        redoc_url=None,
        lifespan=lifespan,
    )
    api.state.tether_app = app
    api.state.tether_config = config
    api.state.tether_streams = Streams()  # its close() ends the open event streams
    _install_handlers(api)
    api.include_router(api_router, prefix="/api/v1", responses=ERRORS)
    api.include_router(ops_router, prefix="/api/v1", responses=ERRORS)
    # after every /runs/ID/... route
    api.include_router(record_router, prefix="/api/v1", responses=ERRORS)
    api.include_router(hooks, responses=ERRORS)
    api.include_router(metrics)
    install_dashboard(api)
    # the last added is the outermost: Edge's own answers (413, a replay, 409) pass
    # through CORS, so a page of an allowed origin can read them too
    api.add_middleware(
        Edge,
        store=app.store,
        clock=app.clock,
        max_body=config.max_body,
        keep=config.idempotency_keep,
    )
    if config.cors_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Idempotent-Replayed"],
        )
    return api


def webhooks_from_env(names: Sequence[str]) -> tuple[Webhook, ...]:
    """Webhooks named `names`, each with its secret(s) from $TETHER_WEBHOOK_SECRET_<NAME>
    (upper case, other characters as ``_``; several secrets comma-separated)."""
    found = []
    for name in names:
        var = "TETHER_WEBHOOK_SECRET_" + "".join(c if c.isalnum() else "_" for c in name).upper()
        value = os.environ.get(var, "")
        secrets = tuple(s for s in (p.strip() for p in value.split(",")) if s)
        if not secrets:
            raise InvalidArgumentError(f"webhook {name!r}: set its secret in ${var}")
        found.append(Webhook(name, secrets))
    return tuple(found)
