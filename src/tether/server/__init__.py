"""tether over HTTP: the API server (`create_app`, `tether serve`), webhooks in,
API tokens, and the typed clients (`Client`, `AsyncClient`).

Needs the ``server`` extra (``pip install 'tether[server]'``: FastAPI, uvicorn,
httpx).
"""

from __future__ import annotations

from .._signatures import Webhook
from ._agents_api import DispatcherView, dispatcher_routes
from ._asgi import ServerConfig, create_app, webhooks_from_env
from ._auth import SCOPES, check_bind, create_token, hash_token, is_loopback
from ._client import AsyncClient, Client
from ._errors import ApiError, ApiUnreachable
from ._models import (
    AICall,
    ApiTokenCreated,
    ApiTokenInfo,
    Event,
    QueueInfo,
    RunPage,
    RunSummary,
    UsageRow,
    WaitSummary,
    WorkerInfo,
)
from ._wire import Call, Calls

__all__ = [
    "SCOPES",
    "AICall",
    "ApiError",
    "ApiTokenCreated",
    "ApiTokenInfo",
    "ApiUnreachable",
    "AsyncClient",
    "Call",
    "Calls",
    "Client",
    "DispatcherView",
    "Event",
    "QueueInfo",
    "RunPage",
    "RunSummary",
    "ServerConfig",
    "UsageRow",
    "WaitSummary",
    "Webhook",
    "WorkerInfo",
    "check_bind",
    "create_app",
    "create_token",
    "dispatcher_routes",
    "hash_token",
    "is_loopback",
    "webhooks_from_env",
]
