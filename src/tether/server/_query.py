"""The query of a request to the API, checked against what its route takes.

A parameter the route does not take (a typo: ``?stauts=failed``) would be
ignored, one given empty (``?workflow=``) would filter on the empty text, and
one given twice (``?status=failed&status=cancelled``) would filter on the last
alone: the caller gets a list, unfiltered, empty or half-filtered, and takes it
for the answer. `ApiRoute` refuses them (400, naming the parameter) after the
route's token check and before its parameters are read.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from ._errors import ApiError, named

__all__ = ["ApiRoute", "meant"]


def meant(name: str, known: Sequence[str], what: str) -> str | None:
    """A guess at the name meant by the unknown `name`, as advice; None if there is
    none. The API's names (`what`: fields, parameters) are snake_case, while a run's
    record (and so a client's habit) is camelCase; the idempotency key is a header."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    if snake != name and snake in known:
        return f'the API\'s {what} are snake_case: send "{snake}"'
    if snake == "idempotency_key":
        return "send the key as the Idempotency-Key header"
    close = difflib.get_close_matches(snake, known, n=1, cutoff=0.8)
    return f'did you mean "{close[0]}"?' if close else None


def _query_names(dependant: Dependant) -> list[str]:
    """The query parameters a route reads, its dependencies' (``Depends()``) too."""
    names = [param.alias for param in dependant.query_params]
    for sub in dependant.dependencies:
        names += [n for n in _query_names(sub) if n not in names]
    return names


def _refuse(code: str, problems: dict[str, str], advice: str) -> ApiError:
    details = [{"field": f"query.{k}", "message": v, "type": code} for k, v in problems.items()]
    return ApiError(400, code, f"{named(details)} ({advice})", details)


def checked_query(request: Request) -> None:
    """Refuse a query parameter the matched `ApiRoute` does not take, or one given
    empty (``?workflow=``, ``?workflow``: as a filter it would match nothing)."""
    route = request.scope["route"]
    assert isinstance(route, ApiRoute)
    given, taken = request.query_params, route.query_names
    unknown = {name: "unknown parameter" for name in given if name not in taken}
    for name in unknown:
        hint = meant(name, taken, "parameters")
        unknown[name] += f"; {hint}" if hint else ""
    if unknown:
        takes = f"takes: {', '.join(taken)}" if taken else "takes no query parameters"
        raise _refuse("unknown_parameter", unknown, f"{request.method} {request.url.path} {takes}")
    empty = {name: "given empty" for name, value in given.multi_items() if value == ""}
    if empty:
        raise _refuse("empty_parameter", empty, "leave the parameter out, or give it a value")
    # every parameter of the API takes one value: a second one was dropped unsaid
    twice = {name: "given more than once" for name in given if len(given.getlist(name)) > 1}
    if twice:
        raise _refuse("repeated_parameter", twice, "give each parameter once")


class ApiRoute(APIRoute):
    """A route of the API: its query may hold only the parameters it takes, none of
    them empty (`checked_query`, run after the route's own dependencies, its token
    check among them, so that a caller without a token learns nothing from it)."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        dependencies = list(kwargs.pop("dependencies", None) or ())
        # older FastAPIs make a router's routes again where it is included: check once
        if not any(d.dependency is checked_query for d in dependencies):
            dependencies.append(Depends(checked_query))
        super().__init__(path, endpoint, dependencies=dependencies, **kwargs)
        self.query_names = _query_names(self.dependant)
