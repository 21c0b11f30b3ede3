"""What every route shares: the served App and its settings on the request, and the
bearer-token check each route declares with `need(scope)`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .._signatures import Webhook
from ..errors import InvalidArgumentError
from ._auth import SCOPES, allows, hash_token, is_loopback, loopback_host, loopback_origin
from ._errors import ApiError
from ._models import Scope
from ._port import ServedApp

__all__ = ["MIB", "TOKEN_COOKIE", "ServerConfig", "granted", "need", "served_app", "settings"]

MIB = 1024 * 1024
TOKEN_COOKIE = "tether_token"  # the API token a browser keeps for the dashboard
_bearer = HTTPBearer(auto_error=False, description="an API token: `tether tokens create`")


@dataclass(frozen=True)
class ServerConfig:
    """How the API is served.

    `max_body`: the largest request body in bytes (413 above it).
    `cors_origins`: origins a browser may call the API from (none: no CORS headers).
    `webhooks`: the ``/hooks/{name}`` endpoints. `allow_unauthenticated`: while no
    API token was ever created (revoking every token does not count as none),
    requests from this machine (a loopback client address) need none, if they are
    addressed to it (a loopback ``Host``) and, unless they only read, come from no
    page of another site (``Origin``); `tether serve` turns it on when it listens
    on loopback only.
    `idempotency_keep`: seconds an Idempotency-Key is remembered.
    `host_chores`: while it is served, the App wakes runs whose timers are due and
    takes up orphans of its workflows (`App.ahost_chores`): the server drives the
    runs it starts, so no worker is needed for their timers.
    """

    max_body: int = MIB
    cors_origins: tuple[str, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    allow_unauthenticated: bool = False
    idempotency_keep: float = 24 * 3600.0
    host_chores: bool = True
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


async def _tokens_made(request: Request) -> bool:
    """True once any API token was ever created, revoked ones included: revoking the
    last token must not open the server again. Tokens are never deleted, so once
    true it stays true, and the server remembers it instead of asking again."""
    state = request.app.state
    if getattr(state, "tether_tokens_made", False):
        return True
    made = bool(await served_app(request).store.list_api_tokens())  # none: a cheap read
    if made:
        state.tether_tokens_made = True
    return made


_SAFE = ("GET", "HEAD", "OPTIONS")
_SEND_TOKEN = (
    "create one with `tether tokens create --scope admin` and send it: "
    "Authorization: Bearer <token>"
)


def _foreign(request: Request) -> str | None:
    """Why a request from this machine is not let in without a token: the page that
    made it was served from another site (its ``Host``, after DNS rebinding, or its
    ``Origin`` on a POST), which a browser on this machine may be made to send. None
    if it is not."""
    host = request.headers.get("host")
    if host is None or not loopback_host(host):
        return (
            f"a request without a token must be addressed to this machine (Host: 127.0.0.1, "
            f"::1 or localhost), not Host: {host!r}"
        )
    origin = request.headers.get("origin")
    if request.method not in _SAFE and origin is not None and not loopback_origin(origin):
        return (
            f"a {request.method} without a token must come from a page on this machine, "
            f"not from Origin: {origin!r}"
        )
    return None


async def granted(request: Request, token: str | None) -> Scope:
    """The scope of a request that carries `token` (None: no token); 401 `ApiError`
    if it is let in with none. While no token was ever created (a revoked one counts),
    a loopback client with no token is let in as ``admin`` when the server allows it
    (`allow_unauthenticated`), if the request is addressed to a loopback host and,
    unless it only reads, comes from no page of another site (`_foreign`)."""
    app, config = served_app(request), settings(request)
    if token is None:
        client = request.client.host if request.client else ""
        if config.allow_unauthenticated and is_loopback(client) and not await _tokens_made(request):
            why = _foreign(request)
            if why is None:
                return "admin"
            raise ApiError(401, "unauthenticated", f"{why}; {_SEND_TOKEN}")
        raise ApiError(
            401,
            "unauthenticated",
            "send an API token: Authorization: Bearer <token> (an admin makes one with "
            "`tether tokens create --scope read|write|admin`)",
        )
    row = await app.store.find_api_token(hash_token(token), at=app.clock.now())
    if row is None or row.scope not in SCOPES:
        raise ApiError(401, "invalid_token", "the API token is unknown or revoked")
    return SCOPES[SCOPES.index(row.scope)]


async def _authorize(
    request: Request, creds: HTTPAuthorizationCredentials | None, needed: Scope
) -> None:
    token = None if creds is None else creds.credentials
    if token is None and request.method in ("GET", "HEAD"):
        # the dashboard's pages read the API (the live event stream) with the token
        # the browser keeps as a cookie; never for a POST, which a cookie cannot
        # authorize on its own (another site could make the browser send one)
        token = request.cookies.get(TOKEN_COOKIE) or None
    scope = await granted(request, token)
    if not allows(scope, needed):
        raise ApiError(
            403,
            "insufficient_scope",
            f"this needs a token of scope {needed!r} (or above), and the one sent is "
            f"{scope!r}; send a token of that scope (an admin makes one with `tether "
            f"tokens create --scope {needed}`)",
            {"needed": needed, "granted": scope},
        )


def need(scope: Scope) -> Any:
    """A route dependency: the request must carry a token of `scope` (or above)."""

    async def check(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        await _authorize(request, creds, scope)

    return Depends(check)
