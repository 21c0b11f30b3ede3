"""Sync facades of async methods: one body per operation, not two.

``run = facade(arun)`` in a class body makes ``run(...)`` drive ``arun(...)``
on the object's own loop (its `run_sync`), with the async method's signature
and docstring (for type checkers, `help()` and IDEs alike).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

__all__ = ["facade"]

P = ParamSpec("P")
R = TypeVar("R")


class _Drives(Protocol):
    def run_sync(self, coro: Coroutine[Any, Any, R]) -> R: ...


S = TypeVar("S", bound=_Drives)


def facade(
    amethod: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], R]:
    """The sync face of `amethod` (whose name starts with ``a``)."""

    @functools.wraps(amethod)
    def sync(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.run_sync(amethod(self, *args, **kwargs))

    name = amethod.__name__.removeprefix("a")
    sync.__name__ = name
    sync.__qualname__ = amethod.__qualname__.rsplit(".", 1)[0] + "." + name
    sync.__doc__ = f"Sync facade of `{amethod.__name__}`.\n\n{amethod.__doc__ or ''}".strip()
    return sync
