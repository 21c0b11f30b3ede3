"""`tether runs ... --server URL`: the same commands, answered by a tether server
through `tether.Client` instead of by the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import TetherError
from ._common import EXIT_NOT_FOUND, EXIT_STORE, EXIT_USAGE, CliState, fail, one_line

if TYPE_CHECKING:
    from ..record import RunRecord
    from ..server import Client

__all__ = ["ask", "records", "summaries"]

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


def summaries(state: CliState, **filters: Any) -> list[Any]:
    """Every run matching `filters`, newest first (`RunSummary` values)."""
    return ask(state, lambda c: list(c.iter_runs(**filters)))


def records(state: CliState, workflow_ids: list[str]) -> dict[str, RunRecord]:
    """The records of runs `workflow_ids`, by id; a run deleted meanwhile is left out."""
    from ..server import ApiError

    def read(client: Client) -> dict[str, RunRecord]:
        found = {}
        for wid in workflow_ids:
            try:
                found[wid] = client.get_record(wid)
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return found

    return ask(state, read)
