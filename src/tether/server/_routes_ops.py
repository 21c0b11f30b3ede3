"""``/api/v1``: AI usage and calls, queues, workers, and API tokens (admin)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request

from .._runner import PROCESS_SCOPE
from ._auth import create_token, token_info
from ._deps import need, served_app
from ._errors import ApiError
from ._models import (
    AICall,
    ApiTokenCreated,
    ApiTokenInfo,
    NewApiToken,
    QueueInfo,
    Text,
    UsageRow,
    WorkerInfo,
)
from ._routes import aware
from ._run_path import RunRoute

__all__ = ["ops_router"]

ops_router = APIRouter(route_class=RunRoute)  # a run id may hold '/': see `RunRoute`
READ, ADMIN = need("read"), need("admin")


@dataclass(frozen=True)
class UsageQuery:
    """The query of ``GET /usage``: `App.usage`'s keyword arguments, passed on as given."""

    workflow: Text | None = None
    tag: Text | None = None
    since: datetime | None = None
    until: datetime | None = None
    group_by: Literal["model", "workflow", "day", "run", "stage"] | None = None
    run: Text | None = None
    children: bool = False


@ops_router.get("/usage", dependencies=[READ], summary="AI calls, tokens and cost, summed")
async def usage(request: Request, query: Annotated[UsageQuery, Depends()]) -> list[UsageRow]:
    """Sums over the call log (`App.usage`); cost is integer micro-USD, and calls at
    no known price count in `unknown_cost_calls`, never as $0."""
    aware(since=query.since, until=query.until)
    rows = await served_app(request).ausage(**asdict(query))
    return [UsageRow.of(r) for r in rows]


@ops_router.get(
    "/runs/{workflow_id:path}/ai-calls", dependencies=[READ], summary="A run's AI calls"
)
async def ai_calls(request: Request, workflow_id: str, children: bool = False) -> list[AICall]:
    rows = await served_app(request).alist_ai_calls(workflow_id, children=children)
    return [AICall.of(r) for r in rows]


@ops_router.get("/queues", dependencies=[READ], summary="Queues: jobs by status, and limits")
async def queues(request: Request) -> list[QueueInfo]:
    app = served_app(request)
    found: dict[str, QueueInfo] = {
        name: QueueInfo(
            name=name, jobs={}, concurrency=lim.concurrency, rate_per_second=lim.rate_per_second
        )
        for name, lim in app.queue_limits.items()
    }
    for queue, status, count in await app.store.jobs_by_queue():
        found.setdefault(queue, QueueInfo(name=queue, jobs={})).jobs[status] = count
    return [found[name] for name in sorted(found)]


@ops_router.get("/workers", dependencies=[READ], summary="Live processes that drive runs")
async def workers(request: Request) -> list[WorkerInfo]:
    app = served_app(request)
    now = app.clock.store_time() or datetime.now(UTC)
    live = []
    for row in await app.store.list_locks(PROCESS_SCOPE):
        if not row.active_at(now):
            continue
        detail = json.loads(row.detail) if row.detail else {}
        live.append(
            WorkerInfo(
                id=row.holder,
                workflows=list(detail.get("workflows", [])),
                queues=list(detail.get("queues", [])),
                since=row.acquired_at,
                expires_at=row.expires_at,
            )
        )
    return live


@ops_router.get("/api-tokens", dependencies=[ADMIN], summary="API tokens (never their secrets)")
async def list_tokens(request: Request) -> list[ApiTokenInfo]:
    return [token_info(r) for r in await served_app(request).store.list_api_tokens()]


@ops_router.post("/api-tokens", dependencies=[ADMIN], status_code=201, summary="New API token")
async def new_token(request: Request, body: NewApiToken) -> ApiTokenCreated:
    app = served_app(request)
    token, row = await create_token(app.store, app.clock, body.scope, body.name)
    return ApiTokenCreated(token=token, info=token_info(row))


@ops_router.delete("/api-tokens/{token_id}", dependencies=[ADMIN], summary="Revoke a token")
async def revoke_token(request: Request, token_id: Text) -> list[ApiTokenInfo]:
    """An id with a NUL is a 422, as every text a request carries to the store
    (`Text`): PostgreSQL refused it, answered as the store down (503, retry later)."""
    app = served_app(request)
    # by id only: a name may be shared, by the caller's own token too
    if await app.store.revoke_api_token(token_id, at=app.clock.now(), by_name=False) == 0:
        raise ApiError(404, "api_token_not_found", f"no live API token {token_id!r}")
    return [token_info(r) for r in await app.store.list_api_tokens() if r.id == token_id]
