"""`install_dashboard`: the dashboard's pages, forms and static files on the API's app."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ._dash import HERE, render
from ._dash_actions import actions_router
from ._dash_agents import agent_pages
from ._dash_auth import LoginNeeded, SetToken, page_path, set_token_cookie
from ._dash_ops import ops_pages
from ._dash_runs import runs_pages
from ._dash_signout import signout_router
from ._dash_values import values_router

__all__ = ["install_dashboard", "page_failed", "page_not_found"]


def _install_handlers(api: FastAPI) -> None:
    async def on_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginNeeded)
        back = {} if exc.back is None else {"here": exc.back}
        return render(request, None, "login.html", status=401, problem=exc.message, **back)

    async def on_token(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SetToken)
        response = RedirectResponse(exc.location, status_code=303)
        set_token_cookie(request, response, exc.token)
        return response

    api.add_exception_handler(LoginNeeded, on_login)
    api.add_exception_handler(SetToken, on_token)


def _for_browser(request: Request) -> bool:
    """Whether a browser asks for a page: a GET that takes HTML, outside the API and the
    webhooks (whose clients read the JSON error), wherever the app is mounted."""
    path = page_path(request)
    if request.method not in ("GET", "HEAD") or path.startswith(("/api/", "/hooks/")):
        return False
    return "text/html" in request.headers.get("accept", "")


def page_not_found(request: Request) -> Response | None:
    """The dashboard's page for an address it has none at, for a browser; None for any
    other request, which gets the API's JSON error. A browser showed ``{"error": ...}``
    for a mistyped page."""
    if not _for_browser(request):
        return None
    return render(request, None, "notfound.html", status=404)


#: the heading of a page the server failed to make, and what its reader can do, by status
_FAILED = {
    503: (
        "The database could not be read",
        "Check that the database the server was started on (--db, or the App's) is "
        "reachable and still holds tether's tables, then reload this page.",
    ),
    500: (
        "The server failed",
        "Reload the page; if it fails again, the server's log has the traceback.",
    ),
}


def page_failed(request: Request, status: int, message: str) -> Response | None:
    """The dashboard's page for a page the server failed to make (the database
    unreachable: 503; a bug: 500), for a browser; None for any other request. A browser
    was shown the API's JSON error in place of the page."""
    if not _for_browser(request):
        return None
    heading, advice = _FAILED.get(status, _FAILED[500])
    return render(
        request, None, "failed.html", status=status, heading=heading, message=message,
        advice=advice,
    )  # fmt: skip


def install_dashboard(api: FastAPI) -> None:
    """Add the dashboard's pages (``/``, ``/runs``, ``/runs/{id}``, ``/queues``,
    ``/usage``, ``/agents``), its forms, its static files (``/-/static``), the sign-in page a
    browser without a usable token gets, and signing out (``/-/logout``)."""
    _install_handlers(api)
    api.include_router(runs_pages)
    api.include_router(values_router)
    api.include_router(actions_router)
    api.include_router(signout_router)
    api.include_router(ops_pages)
    api.include_router(agent_pages)
    api.mount("/-/static", StaticFiles(directory=HERE / "static"), name="dash-static")
