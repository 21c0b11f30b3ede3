"""Prometheus metrics read from the database: runs, latency histograms, queues, AI
usage and live processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest

import tether
from tether import App, FakeClock, ai
from tether.metrics import render_metrics


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert found, f"no sample {sample} in:\n{text}"
    return float(found.group(1))


async def test_metrics_describe_runs_steps_queues_ai_and_processes(database_url: str) -> None:
    clock = FakeClock()
    model = ai.FakeModel(["a", "b"], usage=ai.Usage(input_tokens=10, output_tokens=5))
    prices = ai.Prices({"demo:m": {"input_per_million": 1.0, "output_per_million": 2.0}})
    app = App(database_url, clock=clock, ai=ai.Providers(demo=model, prices=prices))

    @app.workflow(name="two-steps")
    async def two_steps(wf: tether.Workflow) -> str:
        await wf.step("one", lambda: bool(clock.advance(0.2)))  # this step takes 0.2 s
        return (await wf.ai.generate_text("demo:m", prompt="hi")).text

    @app.workflow(name="queued")
    async def queued(wf: tether.Workflow) -> None:
        return None

    try:
        await app.arun(two_steps)
        await app.asubmit(queued, queue="batch")
        clock.advance(10)  # the process announced itself when it ran: still alive
        text = await render_metrics(app.store, clock.now())
    finally:
        await app.aclose()
    assert _value(text, 'tether_runs{workflow="two-steps",status="completed"}') == 1
    assert _value(text, 'tether_runs{workflow="queued",status="pending"}') == 1
    assert _value(text, "tether_step_seconds_count") == 2
    assert _value(text, 'tether_step_seconds_bucket{le="0.1"}') == 1  # the AI step: 0 s
    assert _value(text, 'tether_step_seconds_bucket{le="0.25"}') == 2
    assert _value(text, 'tether_step_seconds_bucket{le="+Inf"}') == 2
    assert abs(_value(text, "tether_step_seconds_sum") - 0.2) < 1e-6
    assert _value(text, 'tether_queue_jobs{queue="batch",state="queued"}') == 1
    assert _value(text, 'tether_queue_oldest_job_age_seconds{queue="batch"}') == 10
    assert _value(text, 'tether_ai_calls_total{model="demo:m"}') == 1
    assert _value(text, 'tether_ai_tokens_total{model="demo:m",kind="input"}') == 10
    assert _value(text, 'tether_ai_cost_usd_total{model="demo:m"}') == 0.00002
    assert re.search(r'^tether_worker_up\{worker="[^"]+"\} 1$', text, re.MULTILINE)
    assert "# TYPE tether_step_seconds histogram" in text
    assert "# TYPE tether_ai_cost_usd_total counter" in text


async def test_a_process_gone_for_an_hour_leaves_the_metrics(database_url: str) -> None:
    # every stopped or killed worker kept its tether_worker_up 0 series for good: the
    # exposition grew with each restart
    clock = FakeClock()
    app = App(database_url, clock=clock)

    @app.workflow(name="one")
    async def one(wf: tether.Workflow) -> None:
        return None

    try:
        await app.arun(one)  # this process announces itself
        await app.aclose()
        app = App(database_url, clock=clock)  # ... and is gone: its claim lapses
        clock.advance(600)
        gone_lately = await render_metrics(app.store, clock.now())
        clock.advance(3600)
        gone_long = await render_metrics(app.store, clock.now())
    finally:
        await app.aclose()
    assert re.search(r'^tether_worker_up\{worker="[^"]+"\} 0$', gone_lately, re.MULTILINE)
    assert "tether_worker_up{" not in gone_long
    assert "tether_worker_heartbeat_age_seconds{" not in gone_long


async def test_a_naive_now_is_refused_saying_to_pass_an_aware_one(database_url: str) -> None:
    """render_metrics(store, datetime.now()) raised a bare TypeError ("can't subtract
    offset-naive and offset-aware datetimes") once a queue or a process was recorded."""
    clock = FakeClock()
    app = App(database_url, clock=clock)
    later = app.workflow(name="later")(_nothing)
    try:
        await app.asubmit(later, queue="q")  # a job waits: its age is measured
        with pytest.raises(tether.InvalidArgumentError, match="takes an aware datetime"):
            await render_metrics(app.store, clock.now().replace(tzinfo=None))
        clock.advance(5)
        text = await render_metrics(app.store, clock.now())
    finally:
        await app.aclose()
    assert _value(text, 'tether_queue_oldest_job_age_seconds{queue="q"}') == 5


async def _nothing(wf: tether.Workflow) -> None:
    return None


async def test_a_status_its_last_run_left_reads_zero_instead_of_vanishing(
    database_url: str,
) -> None:
    """A status was listed only while runs were in it: once the last waiting run went
    on, ``tether_runs{status="waiting"}`` left the exposition instead of reading 0."""
    app = App(database_url, clock=FakeClock())

    @app.workflow(name="gated")
    async def gated(wf: tether.Workflow) -> None:
        await wf.wait_for_signal("go")

    try:
        await app.arun(gated, workflow_id="g")
        waiting = await render_metrics(app.store, app.clock.now())
        await app.asignal("g", "go")
        await app.aresult("g", timeout=10)
        done = await render_metrics(app.store, app.clock.now())
    finally:
        await app.aclose()
    assert _value(waiting, 'tether_runs{workflow="gated",status="waiting"}') == 1
    assert _value(waiting, 'tether_runs{workflow="gated",status="completed"}') == 0
    assert _value(done, 'tether_runs{workflow="gated",status="waiting"}') == 0
    assert _value(done, 'tether_runs{workflow="gated",status="completed"}') == 1
    assert len(re.findall(r"^tether_runs\{", done, re.MULTILINE)) == len(tether.RunStatus)


async def test_calls_of_no_known_price_are_counted_beside_the_cost(database_url: str) -> None:
    """A model with no price read ``tether_ai_cost_usd_total`` 0, as if free, and no
    series said how many calls the cost left out."""
    model = ai.FakeModel(["a", "b", "c"], usage=ai.Usage(input_tokens=10, output_tokens=5))
    prices = ai.Prices({"demo:m": {"input_per_million": 1.0, "output_per_million": 2.0}})
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(demo=model, prices=prices))

    @app.workflow(name="mixed")
    async def mixed(wf: tether.Workflow) -> None:
        await wf.ai.generate_text("demo:m", prompt="priced")
        await wf.ai.generate_text("demo:unpriced", prompt="one")
        await wf.ai.generate_text("demo:unpriced", prompt="two")

    try:
        await app.arun(mixed)
        text = await render_metrics(app.store, app.clock.now())
    finally:
        await app.aclose()
    assert _value(text, 'tether_ai_unpriced_calls_total{model="demo:unpriced"}') == 2
    assert _value(text, 'tether_ai_unpriced_calls_total{model="demo:m"}') == 0
    assert _value(text, 'tether_ai_cost_usd_total{model="demo:m"}') == 0.00002
    assert "# TYPE tether_ai_unpriced_calls_total counter" in text


async def test_cached_input_and_reasoning_tokens_are_counters_of_their_own(
    database_url: str,
) -> None:
    """Only input and output were exposed: a cache's hit rate could not be watched.
    The parts are families of their own, so a sum over `tether_ai_tokens_total`'s
    kinds still counts each token once."""
    usage = ai.Usage(
        input_tokens=100,
        cached_input_tokens=60,
        cache_write_tokens=30,
        output_tokens=20,
        reasoning_tokens=7,
    )
    model = ai.FakeModel(["a", "b"], usage=usage)
    app = App(database_url, clock=FakeClock(), ai=ai.Providers(demo=model))

    @app.workflow(name="cached")
    async def cached(wf: tether.Workflow) -> None:
        await wf.ai.generate_text("demo:m", prompt="one")
        await wf.ai.generate_text("demo:m", prompt="two")

    try:
        await app.arun(cached)
        text = await render_metrics(app.store, app.clock.now())
    finally:
        await app.aclose()
    assert _value(text, 'tether_ai_cached_input_tokens_total{model="demo:m"}') == 120
    assert _value(text, 'tether_ai_cache_write_tokens_total{model="demo:m"}') == 60
    assert _value(text, 'tether_ai_reasoning_tokens_total{model="demo:m"}') == 14
    assert _value(text, 'tether_ai_tokens_total{model="demo:m",kind="input"}') == 200
    kinds = re.findall(r'^tether_ai_tokens_total\{model="demo:m",kind="(\w+)"\}', text, re.M)
    assert kinds == ["input", "output"]
    for name in ("cached_input", "cache_write", "reasoning"):
        assert f"# TYPE tether_ai_{name}_tokens_total counter" in text
    assert re.search(
        r"^# HELP tether_ai_cached_input_tokens_total .*part of kind=input", text, re.M
    )
    assert re.search(r"^# HELP tether_ai_reasoning_tokens_total .*part of kind=output", text, re.M)
