"""An issue's runs, one generation each: `<key>`, `<key>:2`, `<key>:3` ...

A new generation is made only once the one before it has ended, so the ids are
contiguous and the newest is the last that exists. Finding it by asking for
each id in turn cost one read per generation, for every candidate issue at
every tick; an issue retried a hundred times cost a hundred reads a tick.
`Generations` remembers the newest it saw of each issue and looks from there
(the remembered run, then that the next does not exist: two reads), galloping
forward when other dispatchers made more meanwhile, and from the first again
when the remembered one is gone (deleted by `tether runs prune`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._info import RunInfo
from ..errors import RunNotFoundError

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Generations", "generation_id"]


def generation_id(base: str, n: int) -> str:
    """The id of the issue's `n`-th run (the first is the issue's key itself)."""
    return base if n == 1 else f"{base}:{n}"


class Generations:
    """The newest run of each issue, read with as few `get_run` calls as it can."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._seen: dict[str, int] = {}  # key -> the newest generation seen to exist

    async def _get(self, base: str, n: int) -> RunInfo | None:
        try:
            run: RunInfo = await self.app.aget_run(generation_id(base, n))
        except RunNotFoundError:
            return None
        return run

    async def newest(self, base: str) -> tuple[int, RunInfo | None]:
        """The issue's newest generation and its run; (0, None) if it never ran."""
        start = self._seen.get(base, 1)
        run = await self._get(base, start)
        if run is None and start > 1:  # the one remembered is gone: from the first again
            start = 1
            run = await self._get(base, start)
        if run is None:
            self._seen.pop(base, None)
            return 0, None
        n, run = await self._last(base, start, run)
        self._seen[base] = n
        return n, run

    async def _last(self, base: str, low: int, found: RunInfo) -> tuple[int, RunInfo]:
        """The last generation that exists from `low` (which does) on: steps of 1, 2,
        4 ... until one is missing, then halving the gap between."""
        step = 1
        while (more := await self._get(base, low + step)) is not None:
            low, found, step = low + step, more, step * 2
        high = low + step  # missing; every generation from `low` up to it is looked at
        while high - low > 1:
            mid = (low + high) // 2
            if (more := await self._get(base, mid)) is None:
                high = mid
            else:
                low, found = mid, more
        return low, found
