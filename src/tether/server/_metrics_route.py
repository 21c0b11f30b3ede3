"""``GET /metrics``: Prometheus text, read from the database (see `tether.metrics`).

It needs the read scope like the API (a scraper sends a read token as its
bearer), or loopback access while no token exists.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from ..metrics import CONTENT_TYPE, render_metrics
from ._deps import need, served_app

__all__ = ["metrics"]

metrics = APIRouter()
READ = need("read")


@metrics.get("/metrics", dependencies=[READ], summary="Prometheus metrics",
             response_class=PlainTextResponse)  # fmt: skip
async def prometheus(request: Request) -> PlainTextResponse:
    app = served_app(request)
    text = await render_metrics(app.store, app.clock.now())
    return PlainTextResponse(text, media_type=CONTENT_TYPE)
