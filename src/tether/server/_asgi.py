"""The ASGI application: `create_app(app)` (also `App.asgi()`), served by `tether serve`.

It drives the App's async API on the server's own event loop: runs started
through it are driven in the server process (or queued for workers when a
queue is named), and the App is closed when the server shuts down.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from .. import __version__
from ..errors import InvalidArgumentError, TetherError
from ._auth import allows, hash_token, is_loopback
from ._edge import Edge
from ._errors import ApiError, answer_for, error_body
from ._hooks import HookRejected, Webhook
from ._models import Scope
from ._port import ServedApp

__all__ = ["ServerConfig", "create_app", "need", "served_app", "settings", "webhooks_from_env"]

MIB = 1024 * 1024
_bearer = HTTPBearer(auto_error=False, description="an API token: `tether tokens create`")


@dataclass(frozen=True)
class ServerConfig:
    """How the API is served.

    `max_body`: the largest request body in bytes (413 above it).
    `cors_origins`: origins a browser may call the API from (none: no CORS headers).
    `webhooks`: the ``/hooks/{name}`` endpoints. `allow_unauthenticated`: while no
    API token exists, requests from this machine (a loopback client address) need
    none; `tether serve` turns it on when it listens on loopback only.
    `idempotency_keep`: seconds an Idempotency-Key is remembered.
    """

    max_body: int = MIB
    cors_origins: tuple[str, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    allow_unauthenticated: bool = False
    idempotency_keep: float = 24 * 3600.0
    hooks: dict[str, Webhook] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_body, bool) or not isinstance(self.max_body, int):
            raise InvalidArgumentError(f"max_body must be a number of bytes, got {self.max_body!r}")
        if self.max_body < 1:
            raise InvalidArgumentError(f"max_body must be >= 1 byte, got {self.max_body}")
        hooks: dict[str, Webhook] = {}
        for hook in self.webhooks:
            if hook.name in hooks:
                raise InvalidArgumentError(f"webhook {hook.name!r} is configured twice")
            hooks[hook.name] = hook
        object.__setattr__(self, "hooks", hooks)


def served_app(request: Request) -> ServedApp:
    """The tether App behind the request's ASGI application."""
    found: ServedApp = request.app.state.tether_app
    return found


def settings(request: Request) -> ServerConfig:
    found: ServerConfig = request.app.state.tether_config
    return found


async def _authorize(
    request: Request, creds: HTTPAuthorizationCredentials | None, needed: Scope
) -> None:
    app, config = served_app(request), settings(request)
    if creds is None:
        client = request.client.host if request.client else ""
        if (
            config.allow_unauthenticated
            and is_loopback(client)
            and await app.store.count_api_tokens() == 0
        ):
            return
        raise ApiError(401, "unauthenticated", "send an API token: Authorization: Bearer <token>")
    row = await app.store.find_api_token(hash_token(creds.credentials), at=app.clock.now())
    if row is None:
        raise ApiError(401, "invalid_token", "the API token is unknown or revoked")
    if not allows(row.scope, needed):
        raise ApiError(
            403, "insufficient_scope", f"this needs a token of scope {needed!r} (or above)"
        )


def need(scope: Scope) -> Any:
    """A route dependency: the request must carry a token of `scope` (or above)."""

    async def check(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        await _authorize(request, creds, scope)

    return Depends(check)


def _problems(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    details = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    named = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
    return f"invalid request: {named}", details


def _install_handlers(api: FastAPI) -> None:
    async def on_api(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status)

    async def on_tether(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TetherError)
        status, code = answer_for(exc)
        return JSONResponse(error_body(code, str(exc)), status_code=status)

    async def on_invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, details = _problems(exc)
        # json round trip: pydantic's error context may hold values JSON cannot
        safe = json.loads(json.dumps(details, default=str))
        return JSONResponse(error_body("invalid_request", message, safe), status_code=422)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    async def on_hook(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HookRejected)
        return JSONResponse(error_body(exc.code, str(exc)), status_code=exc.status)

    api.add_exception_handler(ApiError, on_api)
    api.add_exception_handler(TetherError, on_tether)
    api.add_exception_handler(RequestValidationError, on_invalid)
    api.add_exception_handler(HTTPException, on_http)
    api.add_exception_handler(HookRejected, on_hook)


def create_app(app: ServedApp, config: ServerConfig | None = None) -> Any:
    """The ASGI application serving `app`: the API under ``/api/v1`` (its OpenAPI
    document at ``/api/v1/openapi.json``) and webhooks under ``/hooks/{name}``."""
    from ._hooks_route import hooks
    from ._routes import api_router
    from ._routes_ops import ops_router

    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
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
    _install_handlers(api)
    api.include_router(api_router, prefix="/api/v1")
    api.include_router(ops_router, prefix="/api/v1")
    api.include_router(hooks)
    if config.cors_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    api.add_middleware(
        Edge,
        store=app.store,
        clock=app.clock,
        max_body=config.max_body,
        keep=config.idempotency_keep,
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
