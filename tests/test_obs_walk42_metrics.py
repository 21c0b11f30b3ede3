"""/metrics walked as an operator reads it: odd names escaped, every gauge after runs
end, and histograms that agree on SQLite and PostgreSQL for one history."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

import tether
from tether import App, FakeClock, RunStatus
from tether.metrics import render_metrics
from tether.store._verbs_metrics import METRIC_BUCKETS


def _samples(text: str, family: str) -> dict[str, float]:
    """Each sample of `family` (its name with labels -> its value)."""
    found = re.findall(rf"^({re.escape(family)}(?:_\w+)?(?:\{{.*\}})?) (\S+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}


async def test_odd_names_are_escaped_and_every_gauge_reads_after_runs_end(
    database_url: str,
) -> None:
    """A workflow name with a quote, a backslash and a newline, and a queue with a quote
    and a backslash, each stay one label value; completed, failed and cancelled runs
    and a cancelled queued job read as such, the rest of each gauge 0."""
    clock = FakeClock()
    app = App(database_url, clock=clock)
    odd = 'we"ird\\name\nx'
    queue = 'q"ue\\ue'

    @app.workflow(name=odd)
    async def fine(wf: tether.Workflow) -> int:
        return await wf.step("one", lambda: 1)

    @app.workflow(name="boom")
    async def boom(wf: tether.Workflow) -> None:
        await wf.step("div", lambda: 1 / 0)

    try:
        await app.arun(fine)
        with pytest.raises(ZeroDivisionError):
            await app.arun(boom)
        queued = await app.asubmit(fine, queue=queue)
        await app.acancel(queued)
        text = await render_metrics(app.store, clock.now())
    finally:
        await app.aclose()
    runs = _samples(text, "tether_runs")
    assert runs['tether_runs{workflow="we\\"ird\\\\name\\nx",status="completed"}'] == 1
    assert runs['tether_runs{workflow="we\\"ird\\\\name\\nx",status="cancelled"}'] == 1
    assert runs['tether_runs{workflow="boom",status="failed"}'] == 1
    assert sum(runs.values()) == 3 and len(runs) == 2 * len(RunStatus)
    jobs = _samples(text, "tether_queue_jobs")
    assert jobs == {
        'tether_queue_jobs{queue="q\\"ue\\\\ue",state="queued"}': 0,
        'tether_queue_jobs{queue="q\\"ue\\\\ue",state="claimed"}': 0,
    }
    # every line is a comment or one sample: no label value broke a line
    for line in text.splitlines():
        assert line.startswith("# ") or re.fullmatch(r"[a-z_]+(\{.*\})? \S+", line), line


async def test_a_step_lasting_a_bucket_bound_counts_in_that_bucket(
    database_url: str,
) -> None:
    """`le` is inclusive: a step of exactly 5 ms is one of ``le="0.005"``. On SQLite the
    duration is the difference of two epoch floats (5.00011 ms here), so such steps fell
    into the next bucket there while PostgreSQL counted them: the same history read two
    ways. Fix: round the difference to microseconds in sqlite.sql's metric queries."""
    clock = FakeClock()
    app = App(database_url, clock=clock)

    @app.workflow(name="bounds")
    async def bounds(wf: tether.Workflow) -> None:
        for bound in METRIC_BUCKETS:  # one step lasting exactly each bound
            await wf.step(f"s{bound}", lambda b=bound: bool(clock.advance(b)))

    try:
        await app.arun(bounds)
        text = await render_metrics(app.store, clock.now())
    finally:
        await app.aclose()
    buckets = _samples(text, "tether_step_seconds")
    for i, bound in enumerate(METRIC_BUCKETS, start=1):
        assert buckets[f'tether_step_seconds_bucket{{le="{bound:g}"}}'] == i, bound


async def test_a_job_claimed_before_it_was_due_waited_no_negative_time(
    database_url: str,
) -> None:
    """A run submitted for later and driven now (`aresume`) claims its job an hour
    before it is due: its wait was counted as -3600 s, so ``tether_job_wait_seconds_sum``
    went down, which a histogram of durations never does. Fix: the wait is at least 0
    (max / GREATEST in the metric_job_wait_seconds queries)."""
    clock = FakeClock()
    app = App(database_url, clock=clock)

    @app.workflow(name="later")
    async def later(wf: tether.Workflow) -> int:
        return 1

    try:
        run_id = await app.asubmit(later, run_after=clock.now() + timedelta(hours=1))
        done = await app.aresume(run_id)
        text = await render_metrics(app.store, clock.now())
    finally:
        await app.aclose()
    assert done.status is RunStatus.COMPLETED
    waits = _samples(text, "tether_job_wait_seconds")
    assert waits["tether_job_wait_seconds_count"] == 1
    assert waits["tether_job_wait_seconds_sum"] == 0
    assert waits['tether_job_wait_seconds_bucket{le="0.005"}'] == 1
