"""Claiming jobs for a host: the one call both hosts make."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._names import check_name
from ..errors import InvalidArgumentError
from ..store import JobRow

if TYPE_CHECKING:
    from ..app import App

__all__ = ["claim_jobs", "queue_names"]


def queue_names(queues: object) -> tuple[str, ...]:
    """The queues a worker serves: one name, or a list of names (never a name's letters)."""
    names = [queues] if isinstance(queues, str) else queues
    if not isinstance(names, Sequence) or not names:
        raise InvalidArgumentError(
            f"queues must be one or more queue names, got {queues!r}; e.g. queues=['default']"
        )
    for name in names:
        check_name("queue name", name)
    return tuple(names)


async def claim_jobs(
    app: App, worker_id: str, queues: Sequence[str], limit: int, *, with_runs: bool = False
) -> list[JobRow]:
    """Claim up to `limit` ready jobs of `queues` for `worker_id`, under the app's job
    visibility and queue limits, at the app's clock; `with_runs`: their runs too, for
    the app's host to drive at once (`JobRow.run`)."""
    return await app.store.claim_jobs(
        worker_id,
        queues,
        limit=limit,
        visibility=app.kernel.job_visibility,
        limits=app.queue_limits,
        now=app.clock.store_time(),
        at=app.clock.now(),
        runs=app.kernel.host.run_claim() if with_runs else None,
    )
