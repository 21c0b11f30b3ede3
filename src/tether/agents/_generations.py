"""An issue's runs, one generation each: `<key>`, `<key>:2`, `<key>:3` ...

The next run is numbered after the newest run of the issue that exists, found by
one query (`Store.newest_generations`) for every candidate issue of a tick, not a
read per issue, nor per generation. It used to be found by asking for `<key>`,
`<key>:2` ... in turn, which stopped at the first missing: once `tether runs
prune` had deleted an issue's early runs, a restarted dispatcher numbered its
next run from 1 again. Numbering after the newest surviving run needs nothing
reserved beforehand, so a crash between choosing the number and creating the
run leaves nothing behind; two dispatchers racing choose the same id, and the
run is created once (`create_run` keeps the first of an id).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._info import RunInfo

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Generations", "generation_id", "generation_of"]


def generation_id(base: str, n: int) -> str:
    """The id of the issue's `n`-th run (the first is the issue's key itself)."""
    return base if n == 1 else f"{base}:{n}"


def generation_of(base: str, run_id: str) -> int:
    """Which of the issue's runs `run_id` is (the inverse of `generation_id`)."""
    return 1 if run_id == base else int(run_id[len(base) + 1 :])


class Generations:
    """The newest run of each issue, read for many issues at once."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def newest_of(self, bases: Sequence[str]) -> dict[str, tuple[int, RunInfo]]:
        """Each issue's newest generation and its run, by key (an issue that never
        ran, or whose runs were all deleted, is missing)."""
        rows = await self.app.store.newest_generations(bases)
        return {
            base: (generation_of(base, row.workflow_id), RunInfo.from_row(row))
            for base, row in rows.items()
        }

    async def newest(self, base: str) -> tuple[int, RunInfo | None]:
        """The issue's newest generation and its run; (0, None) if it never ran."""
        return (await self.newest_of([base])).get(base, (0, None))
