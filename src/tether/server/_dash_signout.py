"""Signing out of the dashboard: ``POST /-/logout`` forgets the token the browser keeps
as a cookie, and lands on the sign-in page saying so.

Signing out is a form like the others (same site, the page's CSRF token), so another
site cannot sign a reader out. It needs no usable token: one revoked meanwhile is the
very cookie a reader wants gone. ``GET /-/logout`` signs no one out (a browser's or a
chat app's prefetch of a link would): it answers with a page that offers the button.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from ._dash import render
from ._dash_auth import (
    LoginNeeded,
    Viewer,
    check_csrf,
    clear_cookies,
    csrf_of,
    keep_csrf,
    mount_root,
    viewer,
)
from ._deps import TOKEN_COOKIE
from ._errors import ApiError

__all__ = ["signout_router"]

signout_router = APIRouter(include_in_schema=False)

_STALE = (
    "Reload the page you signed out from and press Sign out again. If this keeps "
    "happening, your browser may be blocking this site's cookies."
)


@signout_router.post("/-/logout")
async def logout(request: Request) -> Response:
    """Forget the browser's token (and CSRF) cookies; land on the sign-in page."""
    body = await request.body()
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    try:
        check_csrf(request, form)
    except ApiError as exc:
        return render(request, None, "denied.html", status=exc.status, problem=exc.message,
                      advice=_STALE)  # fmt: skip
    response = RedirectResponse(f"{mount_root(request)}/-/login?out=1", status_code=303)
    clear_cookies(request, response)
    return response


@signout_router.get("/-/logout")
async def logout_page(request: Request) -> Response:
    """The page with the sign-out button (a GET never signs out: a prefetch would). It
    shows whether the browser keeps a token at all, and needs no usable one."""
    who: Viewer | None
    try:
        who = await viewer(request)
    except LoginNeeded:  # a revoked token's cookie: it may still be forgotten
        who = None
    csrf, new = (who.csrf, who.new_csrf) if who else csrf_of(request)
    kept = bool(request.cookies.get(TOKEN_COOKIE))
    # signing in from here (``sign in to act``) lands on the runs, not back on this page
    here = f"{mount_root(request)}/runs"
    response = render(request, who, "logout.html", kept=kept, csrf=csrf, here=here)
    if new and who is None:
        keep_csrf(request, response, csrf)
    return response
