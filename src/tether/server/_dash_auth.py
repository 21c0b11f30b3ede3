"""Who may see the dashboard, and the defence of its forms against other sites.

A page is let in by the API's rules (`granted`): an API token, or nothing
while no token exists and the browser is on this machine. A browser passes
its token once, as ``?token=`` on any page (or through the sign-in form): the
server checks it, keeps it in an HttpOnly, SameSite=Strict cookie, and
redirects to the same address without it, so it leaves the address bar.

Forms that act on runs (signal, complete a token, send an event, cancel) are
POSTs, and a cookie alone never authorizes one (another site could make the
browser send it). Each form carries the page's CSRF token, which must equal
the value of a second cookie the pages set (double submit: another site can
neither read nor set it), and a request whose ``Origin`` names another site
is refused outright. Signing out (``POST /-/logout``) is such a form too, checked
by `check_csrf` alone: a revoked token's cookie may still be forgotten.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from fastapi import Request
from fastapi.responses import Response

from ._auth import allows
from ._dash_view import run_url
from ._deps import TOKEN_COOKIE, granted
from ._errors import ApiError
from ._models import Scope

__all__ = [
    "CSRF_COOKIE",
    "LoginNeeded",
    "SetToken",
    "Viewer",
    "check_csrf",
    "check_form",
    "clear_cookies",
    "csrf_of",
    "keep_cookies",
    "keep_csrf",
    "mount_root",
    "mounted_run_url",
    "page_path",
    "sent_path",
    "viewer",
    "without_token",
]

CSRF_COOKIE = "tether_csrf"
_YEAR = 365 * 24 * 3600


class LoginNeeded(Exception):
    """The page needs an API token the request does not carry (answered with the sign-in page).
    `back` is the page signing in returns to when it is not the request's own address: a
    POST's address (the sign-in form's, a run's form's) answers no GET, and signing in
    there ended on a JSON error."""

    def __init__(self, message: str, back: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.back = back


class SetToken(Exception):
    """A good ``?token=``: answered by a redirect that keeps it as a cookie."""

    def __init__(self, location: str, token: str) -> None:
        super().__init__(location)
        self.location = location
        self.token = token


@dataclass(frozen=True)
class Viewer:
    """The browser behind a request: its scope and the CSRF token its forms carry."""

    scope: Scope
    csrf: str
    new_csrf: bool  # set the CSRF cookie with the answer
    by_cookie: bool = False  # let in by the token cookie: it may sign out

    @property
    def can_write(self) -> bool:
        return allows(self.scope, "write")


def _token(request: Request) -> tuple[str | None, bool]:
    """The request's token, and whether it is the cookie's (not an Authorization header)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip(), False
    cookie = request.cookies.get(TOKEN_COOKIE) or None
    return cookie, cookie is not None


def csrf_of(request: Request) -> tuple[str, bool]:
    """The CSRF token the browser's forms carry (its cookie's), and whether it is new
    (no cookie yet: the answer sets one)."""
    csrf = request.cookies.get(CSRF_COOKIE)
    return (csrf, False) if csrf else (secrets.token_urlsafe(24), True)


def sent_path(request: Request) -> str:
    """The request's path as the browser sent it, still percent-encoded: a run id's
    ``%2F``, ``%23`` or ``%25`` (decoded in ``request.url.path``) kept as it was."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw.startswith(b"/"):
        return raw.decode("latin-1").partition("?")[0]
    return request.url.path


def mount_root(request: Request) -> str:
    """Where the app is mounted (the ASGI ``root_path``: ``/tether`` behind a proxy that
    serves it there, "" at the site's root). Every address a page, form, redirect or
    cookie gives starts with it: they led out of the mount, to the proxy's other site."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def mounted_run_url(request: Request, workflow_id: str) -> str:
    """The address of a run's page as a redirect or a link gives it: below the mount."""
    return mount_root(request) + run_url(workflow_id)


def page_path(request: Request) -> str:
    """`sent_path` below the mount point (``/runs`` at ``/tether/runs``): the page's
    place among the dashboard's own."""
    path, root = sent_path(request), mount_root(request)
    return (path[len(root) :] or "/") if root and path.startswith(root) else path


def without_token(request: Request) -> str:
    """The request's path (as sent) and query, less its ``token`` parameter."""
    query = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True)]
    kept = urlencode([(k, v) for k, v in query if k != "token"])
    return sent_path(request) + ("?" + kept if kept else "")


async def viewer(request: Request) -> Viewer:
    """A route dependency of every page: who is looking (or `LoginNeeded`)."""
    given = request.query_params.get("token")
    if given is not None:
        try:
            await granted(request, given.strip() or None)
        except ApiError as exc:
            raise LoginNeeded(exc.message) from None
        raise SetToken(without_token(request), given.strip())
    token, by_cookie = _token(request)
    try:
        scope = await granted(request, token)
    except ApiError as exc:
        raise LoginNeeded(exc.message) from None
    csrf, new = csrf_of(request)
    return Viewer(scope, csrf, new, by_cookie)


def keep_cookies(request: Request, response: Response, who: Viewer) -> None:
    if who.new_csrf:
        _set_cookie(request, response, CSRF_COOKIE, who.csrf)


def keep_csrf(request: Request, response: Response, csrf: str) -> None:
    """Set the CSRF cookie `csrf` (a page without a `Viewer` whose form carries it)."""
    _set_cookie(request, response, CSRF_COOKIE, csrf)


def clear_cookies(request: Request, response: Response) -> None:
    """Sign the browser out: its token cookie gone, and the CSRF token with it (the
    next page sets a new one), each removed at the place it was set with the same flags."""
    for name in (TOKEN_COOKIE, CSRF_COOKIE):
        response.delete_cookie(
            name,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=mount_root(request) or "/",
        )


def set_token_cookie(request: Request, response: Response, token: str) -> None:
    _set_cookie(request, response, TOKEN_COOKIE, token, max_age=_YEAR)


def _set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None = None
) -> None:
    """Every dashboard cookie alike: out of scripts' reach (HttpOnly), never sent by
    another site's request (SameSite=Strict), Secure over https, for the whole
    dashboard: its mount point, not the rest of the site behind the same proxy."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=mount_root(request) or "/",
    )


def same_origin(request: Request) -> bool:
    """False if the request says it comes from another site (``Origin``)."""
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every browser for a same-origin POST
        return True
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def check_csrf(request: Request, form: dict[str, str]) -> None:
    """`ApiError` 403 unless the form came from one of our pages: same site, and the
    CSRF token its page gave (the cookie's)."""
    if not same_origin(request):
        raise ApiError(403, "cross_origin", "this form was sent from another site")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise ApiError(403, "csrf", "the form is stale or was not sent from this dashboard")


async def check_form(request: Request, form: dict[str, str], needed: Scope) -> Viewer:
    """The viewer behind a form POST, if it came from one of our pages and may act:
    `ApiError` 403 otherwise (`LoginNeeded` with no usable token)."""
    check_csrf(request, form)
    who = await viewer(request)
    if not allows(who.scope, needed):
        raise ApiError(403, "insufficient_scope", f"this needs a token of scope {needed!r}")
    return who
