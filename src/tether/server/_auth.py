"""API tokens: bearer secrets with a scope, of which the store keeps only a sha256.

A token is 32 random bytes (URL-safe base64 behind a ``tth_`` prefix), so a
plain sha256 is enough to store it: there is nothing to brute-force that a
slow hash would protect, and a lookup by hash is one indexed read.

Scopes nest: ``read`` may GET, ``write`` may also act on runs (POST), and
``admin`` may also manage tokens.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import unicodedata
import uuid
from urllib.parse import urlsplit

from .._names import check_text
from ..clock import Clock
from ..errors import InvalidArgumentError
from ..store import ApiTokenRow, Store
from ._models import ApiTokenInfo, Scope

__all__ = [
    "SCOPES",
    "allows",
    "check_bind",
    "create_token",
    "hash_token",
    "is_loopback",
    "loopback_host",
    "loopback_origin",
    "token_info",
]

SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
PREFIX = "tth_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def allows(granted: str, needed: str) -> bool:
    """True if a token of scope `granted` may do what needs scope `needed`."""
    if granted not in SCOPES or needed not in SCOPES:
        return False
    return SCOPES.index(granted) >= SCOPES.index(needed)


async def create_token(
    store: Store, clock: Clock, scope: str, name: str | None = None
) -> tuple[str, ApiTokenRow]:
    """A new token of `scope`: (the secret, shown once; its stored row)."""
    if scope not in SCOPES:
        raise InvalidArgumentError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if name is not None:
        name = _new_name(name)
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiTokenRow(
        id="tok_" + uuid.uuid4().hex[:12],
        name=name,
        scope=scope,
        token_hash=hash_token(token),
        created_at=clock.now(),
        last_used_at=None,
        revoked_at=None,
    )
    await store.create_api_token(row)
    return token, row


def _new_name(name: object) -> str:
    """A new token's name, as `tether tokens create --name` takes it: text the database
    stores, not blank, and with no control character (a newline split it over two rows
    of `tether tokens list`). Lookups and revocations take any name: tokens made before
    this check must stay reachable."""
    name = check_text("a token's name", name)
    if not name.strip():
        raise InvalidArgumentError("a token's name must not be blank")
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise InvalidArgumentError(
            f"a token's name {name!r} contains a control character ({control!r}), which "
            "would break the lines of a table; pass a name of printable characters"
        )
    return name


def token_info(row: ApiTokenRow) -> ApiTokenInfo:
    return ApiTokenInfo.model_validate(row, from_attributes=True)


def is_loopback(host: str) -> bool:
    """True for a host name or address that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_host(host: str) -> bool:
    """True if a ``Host`` header (a name or address, any port) names this machine:
    ``127.0.0.1:8000``, ``[::1]:8000``, ``localhost``. A page a browser loaded from
    another name (DNS rebinding: the attacker's name resolving to 127.0.0.1) sends
    that name, and is refused."""
    name, port = host, ""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        if rest and not rest.startswith(":"):
            return False
        port = rest[1:]
    elif ":" in host:
        name, _, port = host.rpartition(":")
    if port and not (port.isascii() and port.isdigit()):
        return False
    return is_loopback(name.lower())


def loopback_origin(origin: str) -> bool:
    """True if an ``Origin`` header names a page served from this machine
    (``http://127.0.0.1:8000``, ``http://localhost:5173``); ``null``, a file and
    other sites are not."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return False
    return parts.path in ("", "/") and loopback_host(parts.netloc)


def check_bind(host: str, tokens: int) -> None:
    """Refuse to listen beyond this machine while no API token exists: every request
    would be refused (there is nothing to authenticate with), or, worse, a server
    configured to allow unauthenticated access would be open to the network."""
    if not is_loopback(host) and tokens == 0:
        raise InvalidArgumentError(
            f"refusing to listen on {host!r} with no API token: anyone who can reach it "
            "could steer runs. Create one first (`tether tokens create --scope admin`) "
            "or listen on 127.0.0.1"
        )
