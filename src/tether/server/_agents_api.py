"""Symphony's status API, served beside tether's own by ``tether agents run --port``.

``GET /api/v1/state`` (issues running, retrying and waiting for a person, with
totals), ``GET /api/v1/<identifier>`` (one issue's newest run, 404
``issue_not_found`` if it never ran) and ``POST /api/v1/refresh`` (202: the
dispatcher polls and reconciles now; requests before that tick coalesce; another
method there is a 405 whose ``Allow`` names POST, not the issue "refresh").
These routes come after tether's own, so ``/api/v1/runs`` and the rest keep
their meaning. Reading needs a ``read`` token, refreshing a ``write`` one, as
for every route. The dispatcher is reached through `DispatcherView`, so the
server does not import the agents extra.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from ._deps import need
from ._errors import ApiError
from ._models import ERRORS

__all__ = ["DispatcherView", "dispatcher_routes"]


class DispatcherView(Protocol):
    async def state_report(self) -> dict[str, Any]: ...

    async def issue_report(self, identifier: str) -> dict[str, Any] | None: ...

    def refresh(self) -> dict[str, Any]: ...


class _Issue(APIRoute):
    """``/api/v1/<identifier>``, which does not take ``/api/v1/refresh``: a GET there was
    read as the issue "refresh" (404); now it is the refresh route's 405, ``Allow``
    naming POST."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and child["path_params"].get("identifier") == "refresh":
            return Match.NONE, {}
        return match, child


def dispatcher_routes(view: DispatcherView) -> APIRouter:
    """The routes of Symphony's status API over `view`, under ``/api/v1``."""
    router = APIRouter(prefix="/api/v1", tags=["agents"], responses=ERRORS)

    @router.get("/state", dependencies=[need("read")])
    async def state() -> dict[str, Any]:
        return await view.state_report()

    @router.post("/refresh", status_code=202, dependencies=[need("write")])
    async def refresh() -> JSONResponse:
        return JSONResponse(view.refresh(), status_code=202)

    async def issue(identifier: str) -> dict[str, Any]:
        found = await view.issue_report(identifier)
        if found is None:
            raise ApiError(404, "issue_not_found", f"no run of issue {identifier!r}")
        return found

    router.add_api_route(
        "/{identifier}",
        issue,
        methods=["GET"],
        dependencies=[need("read")],
        route_class_override=_Issue,
    )

    return router
