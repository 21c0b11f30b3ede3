"""`tether runs ... --server URL`: the same commands, answered by a tether server
through `tether.Client` instead of by the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import TetherError
from ._common import EXIT_NOT_FOUND, EXIT_STORE, EXIT_USAGE, CliState, fail, one_line

if TYPE_CHECKING:
    from ..server import Client

__all__ = ["ask", "matching"]

T = TypeVar("T")


@contextmanager
def _client(state: CliState) -> Iterator[Client]:
    try:
        from ..server import Client
    except ImportError as exc:
        fail(EXIT_USAGE, f"--server needs the server extra: pip install 'tether[server]' ({exc})")
    assert state.server is not None
    try:
        client = Client(state.server, state.token)
    except TetherError as exc:  # not an http(s) URL
        fail(EXIT_USAGE, f"--server: {one_line(exc)}")
    with client:
        yield client


def ask(state: CliState, question: Callable[[Client], T]) -> T:
    """`question` asked of the server; its errors as one line and the CLI's exit codes
    (no such run: 3; unreachable or failing server: 4; a token missing, unknown or
    short of the scope, as any other refusal: 2)."""
    from ..server import ApiError

    with _client(state) as client:
        try:
            return question(client)
        except ApiError as exc:
            if exc.status == 404:
                fail(EXIT_NOT_FOUND, exc.message)
            if exc.status == 0 or exc.status >= 500:
                fail(EXIT_STORE, one_line(exc))
            fail(EXIT_USAGE, one_line(exc))


_PAGE = 500  # runs asked for at a time (the API's most)


def matching(
    state: CliState,
    more_tags: tuple[str, ...],
    limit: int | None,
    *,
    full: bool,
    **filters: Any,
) -> tuple[list[Any], int]:
    """The first `limit` runs that match `filters` and carry `more_tags` too (every one
    if None), newest first (`RunSummary` values), and how many match. A page a request:
    with `full`, those shown come with their input, output, state and owner
    (``fields=full``; it was a request a run for their records), the rest are only
    counted, from pages of summaries."""

    def read(client: Client) -> tuple[list[Any], int]:
        found: list[Any] = []
        cursor: str | None = None
        while True:
            short = limit is None or len(found) < limit
            size = _PAGE if limit is None or not short else min(_PAGE, limit - len(found))
            page = client.list_runs(
                **filters, cursor=cursor, limit=size, fields="full" if full and short else None
            )
            found += [r for r in page.runs if all(t in r.tags for t in more_tags)]
            if page.next_cursor is None:
                return found[:limit], len(found)
            cursor = page.next_cursor

    return ask(state, read)
