"""Metric verbs: the numbers behind ``/metrics`` and ``tether top``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._base import StoreBase, Tx
from ._records import AIUsageRow, Histogram, QueueDepth, RunFilter, RunStatus
from ._verbs_ai import usage_row
from ._verbs_api import filter_params

__all__ = ["METRIC_BUCKETS", "MetricVerbs"]

# the upper bounds (seconds) of the latency histograms; the queries spell them out
METRIC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                  300.0, 1800.0)  # fmt: skip
HISTOGRAMS = ("step_seconds", "job_wait_seconds", "job_run_seconds")


def _histogram(r: Sequence[Any]) -> Histogram:
    n = len(METRIC_BUCKETS)
    return Histogram(
        buckets=tuple(zip(METRIC_BUCKETS, (int(c or 0) for c in r[:n]), strict=True)),
        count=int(r[n] or 0),
        total=float(r[n + 1] or 0.0),
    )


class MetricVerbs(StoreBase):
    async def run_counts(self, where: RunFilter | None = None) -> list[tuple[str, str, int]]:
        """(workflow, status, runs) for every pair that has runs matching `where` (its
        status aside; None: every run), by workflow then status."""
        params = filter_params(where or RunFilter())
        return await self._list("run_counts", lambda _, r: (r[0], r[1], int(r[2])), **params)

    async def costliest_open_runs(self, limit: int) -> list[tuple[str, RunStatus, AIUsageRow]]:
        """The `limit` unfinished runs whose AI calls cost the most so far, costliest
        first: (workflow name, status, usage grouped by the run's id). Read from the
        open runs, however many runs ended before them: a sum over every call ever
        made, redrawn each second, grew with the whole log."""
        return await self._list(
            "costliest_open_runs",
            lambda _, r: (r[1], RunStatus(r[2]), usage_row(r[0], r[3:])),
            n=limit,
        )

    async def latency_histogram(self, which: str) -> Histogram:
        """``step_seconds`` (a completed step, started to completed), ``job_wait_seconds``
        (an ended job, last due to last claimed) or ``job_run_seconds`` (a done job, claimed to
        done), over every row recorded.
        """
        if which not in HISTOGRAMS:
            raise ValueError(f"which must be one of {HISTOGRAMS}, got {which!r}")

        async def body(tx: Tx) -> Histogram:
            return _histogram(await tx.one(f"metric_{which}"))

        return await self._tx("read", body)

    async def queue_depths(self) -> list[QueueDepth]:
        """Per queue: jobs waiting, jobs claimed, when the oldest waiting one was due."""
        return await self._list(
            "metric_queues",
            lambda rows, r: QueueDepth(r[0], int(r[1] or 0), int(r[2] or 0), rows.ot(r[3])),
        )
