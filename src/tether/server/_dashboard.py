"""`install_dashboard`: the dashboard's pages, forms and static files on the API's app."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ._dash import HERE, render
from ._dash_actions import actions_router
from ._dash_agents import agent_pages
from ._dash_auth import LoginNeeded, SetToken, set_token_cookie
from ._dash_ops import ops_pages
from ._dash_runs import runs_pages

__all__ = ["install_dashboard", "page_not_found"]


def _install_handlers(api: FastAPI) -> None:
    async def on_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginNeeded)
        return render(request, None, "login.html", status=401, problem=exc.message)

    async def on_token(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SetToken)
        response = RedirectResponse(exc.location, status_code=303)
        set_token_cookie(request, response, exc.token)
        return response

    api.add_exception_handler(LoginNeeded, on_login)
    api.add_exception_handler(SetToken, on_token)


def page_not_found(request: Request) -> Response | None:
    """The dashboard's page for an address it has none at, for a browser (a GET that
    takes HTML, outside the API and the webhooks); None for any other request, which
    gets the API's JSON error. A browser showed ``{"error": ...}`` for a mistyped page."""
    path = request.url.path
    if request.method not in ("GET", "HEAD") or path.startswith(("/api/", "/hooks/")):
        return None
    if "text/html" not in request.headers.get("accept", ""):
        return None
    return render(request, None, "notfound.html", status=404)


def install_dashboard(api: FastAPI) -> None:
    """Add the dashboard's pages (``/``, ``/runs``, ``/runs/{id}``, ``/queues``,
    ``/usage``, ``/agents``), its forms, its static files (``/-/static``) and the sign-in page a
    browser without a usable token gets."""
    _install_handlers(api)
    api.include_router(runs_pages)
    api.include_router(actions_router)
    api.include_router(ops_pages)
    api.include_router(agent_pages)
    api.mount("/-/static", StaticFiles(directory=HERE / "static"), name="dash-static")
