"""`wf.ai.batch` at its edges: the last look at `max_wait`, batches that end short
(expired, cancelled, cancelled at `max_wait`) with billed results, a provider that
fails its status reads, its results or its cancel (at `max_wait` or when the run is
cancelled), and a submit retried after a crash. The official SDKs talk to a real
local server; time is a fake clock, except in the process that is killed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether import App, FakeClock, RunRecord, RunResult, RunStatus, Workflow, ai
from tether.testing import eventually

from .._env import child_pythonpath
from ._server import ProviderServer

MODELS = {"openai": "openai:gpt-4.1-mini", "anthropic": "anthropic:claude-sonnet-4-5"}


class _Caught(logging.Handler):
    """The records one logger emits, kept in order."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def said(self, words: str) -> list[logging.LogRecord]:
        return [r for r in self.records if words in r.getMessage()]


@pytest.fixture
def ai_log() -> Iterator[_Caught]:
    """What logger ``tether.ai`` says at INFO and above, caught by a handler on that
    logger itself. caplog's handler sits on the root logger, where an earlier test in
    the same process can hide these records (`tether runs signal` run in-process sets
    the ``tether`` logger to ERROR; a dictConfig disables existing loggers; a logger
    may stop propagating): the tests failed by order, or a `not in` passed idly."""
    logger = logging.getLogger("tether.ai")
    caught, level, disabled = _Caught(), logger.level, logger.disabled
    logger.setLevel(logging.INFO)
    logger.disabled = False
    logger.addHandler(caught)
    try:
        yield caught
    finally:
        logger.removeHandler(caught)
        logger.setLevel(level)
        logger.disabled = disabled


def _app(
    database_url: str, clock: FakeClock, server: ProviderServer, timeout: float | None = None
) -> App:
    providers = ai.Providers(
        openai=ai.OpenAI(api_key="k", base_url=server.openai_url, timeout=timeout),
        anthropic=ai.Anthropic(api_key="k", base_url=server.anthropic_url, timeout=timeout),
    )
    return App(database_url, clock=clock, ai=providers, inline_wait=0)


def _batcher(app: App, model: str, size: int, poll_every: float, max_wait: float) -> object:
    @app.workflow(name="batched")
    async def batched(wf: Workflow) -> dict[str, str | None]:
        prompts = [f"q{i}" for i in range(size)]
        res = await wf.ai.batch(model, prompts, poll_every=poll_every, max_wait=max_wait)
        return {k: v.text for k, v in res.items.items()}

    return batched


async def _later(app: App, clock: FakeClock, wid: str, seconds: float, polls: int) -> None:
    """Let `seconds` pass and fire the timers due; back once the run made `polls`
    status polls in all and rests again."""
    clock.advance(seconds)
    await app.afire_due_timers()

    async def polled() -> bool:
        rec = await app.aget_record(wid)
        made = [k for k in rec.steps if ".poll" in k]
        return rec.status is not RunStatus.RUNNING and len(made) >= polls

    await eventually(polled, timeout=10)


async def test_a_batch_done_in_the_last_wait_is_looked_at_max_wait_and_collected(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 2, poll_every=60, max_wait=150)
    assert (await app.arun(batched, workflow_id="lw")).status is RunStatus.WAITING  # t=0
    await _later(app, clock, "lw", 60, polls=2)
    await _later(app, clock, "lw", 60, polls=3)  # t=120: pending; 30 s of max_wait left
    server.finish_batches()  # done before max_wait, after the last full wait
    done = await _ended(app, clock, "lw", 30)  # t=150: the last look, not t=180 nor a cancel
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert done.value == {"0": "echo: q0", "1": "echo: q1"}
    assert server.count("POST /v1/batches/") == 0  # never cancelled
    assert len(await app.alist_ai_calls("lw")) == 2  # its results, recorded
    await app.aclose()


async def test_max_wait_shorter_than_poll_every_gives_up_at_max_wait(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 1, poll_every=60, max_wait=10)
    assert (await app.arun(batched, workflow_id="mw")).status is RunStatus.WAITING
    done = await _ended(app, clock, "mw", 10)  # max_wait, not poll_every
    assert done.status is RunStatus.FAILED
    assert "did not finish within max_wait=10 s" in _error(done)
    [batch] = server.state.batches.values()
    assert batch["status"] == "cancelled"
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("finished", [False, True])
async def test_max_wait_passed_while_the_process_was_down_ends_at_the_next_look(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str, finished: bool
) -> None:
    """Before, `max_wait` counted only the time slept: a process down two days past
    `max_wait=300` came back and polled five more minutes (a day more at the default),
    the batch running on, billed. Now the next look, at the restart, is the last: a
    batch still pending is cancelled and the run fails; one done meanwhile is taken."""
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS[provider], 2, poll_every=60, max_wait=300)
    assert (await app.arun(batched, workflow_id="dn")).status is RunStatus.WAITING
    await app.aclose()  # the process goes down with the batch in flight
    if finished:
        server.finish_batches()
    app = _app(database_url, clock, server)
    _batcher(app, MODELS[provider], 2, poll_every=60, max_wait=300)
    await _later(app, clock, "dn", 2 * 86400, polls=2)  # back two days later
    rec = await app.aget_record("dn")
    assert sum(".poll" in k for k in rec.steps) == (2 if finished else 3), sorted(rec.steps)
    if finished:
        assert rec.status is RunStatus.COMPLETED, rec.last_error
        assert server.count(CANCEL[provider]) == 0
    else:
        assert rec.status is RunStatus.FAILED, rec.status
        assert rec.last_error is not None
        assert "did not finish within max_wait=300 s" in rec.last_error.message
        assert server.count(CANCEL[provider]) == 1
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("ending", ["expired", "cancelled"])
async def test_a_batch_that_ended_short_records_its_completed_results_then_fails(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str, ending: str
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS[provider], 2, poll_every=60, max_wait=3600)
    assert (await app.arun(batched, workflow_id="es")).status is RunStatus.WAITING
    server.end_batches(ending, completed=1)  # one request done (billed), one not
    done = await _ended(app, clock, "es", 60)
    assert done.status is RunStatus.FAILED
    said = _error(done)
    assert "ended" in said and "1 of its 2 requests completed" in said, said
    await _one_result_recorded(app, "es")
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_batch_cancelled_at_max_wait_records_what_it_completed(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    server.state.cancel_completes = 1  # done before the cancel: billed
    server.state.cancelling_reads = 1  # the provider takes a while to cancel
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS[provider], 2, poll_every=60, max_wait=60)
    assert (await app.arun(batched, workflow_id="cm")).status is RunStatus.WAITING
    await _later(app, clock, "cm", 60, polls=3)  # max_wait: cancelled, still cancelling
    done = await _ended(app, clock, "cm", 60)
    assert done.status is RunStatus.FAILED
    said = _error(done)
    assert "did not finish within max_wait=60 s" in said, said
    assert "1 of its 2 requests completed" in said, said
    await _one_result_recorded(app, "cm")
    await app.aclose()


async def test_a_fake_model_batch_past_max_wait_is_cancelled_and_fails_the_run(
    database_url: str, clock: FakeClock
) -> None:
    fake = ai.FakeModel(batch_polls=100)
    app = App(database_url, clock=clock, ai=ai.Providers(fake=fake), inline_wait=0)
    batched = _batcher(app, "fake:m", 2, poll_every=60, max_wait=60)
    assert (await app.arun(batched, workflow_id="fm")).status is RunStatus.WAITING
    done = await _ended(app, clock, "fm", 60)
    said = _error(done)
    assert "did not finish within max_wait=60 s; it was cancelled and none of its 2" in said
    assert fake.calls == []  # cancelled before it answered any
    await app.aclose()


async def test_a_fake_model_batch_run_again_on_the_same_database_logs_its_calls(
    database_url: str, clock: FakeClock
) -> None:
    """Before, each FakeModel numbered its batches from 1, and the call log keeps one
    row per (batch id, custom_id): the same script run a second time on the same
    database (a new process, a new FakeModel) had its batch's calls silently dropped,
    its usage empty and its spend uncounted by any budget."""
    for wid in ("first", "second"):  # two runs of one script, each with its own FakeModel
        app = App(database_url, clock=clock, ai=ai.Providers(fake=ai.FakeModel()), inline_wait=0)
        batched = _batcher(app, "fake:m", 2, poll_every=60, max_wait=600)
        assert (await app.arun(batched, workflow_id=wid)).status is RunStatus.WAITING
        done = await _ended(app, clock, wid, 60)
        assert done.status is RunStatus.COMPLETED, done.record.last_error
        calls = await app.alist_ai_calls(wid)
        assert sorted(c.custom_id or "" for c in calls) == ["0", "1"], wid
        assert done.record.usage is not None and done.record.usage.total.calls == 2
        await app.aclose()


# -- a provider failing its status reads or its cancel ------------------------------------

STATUS = {"openai": "GET /v1/batches/", "anthropic": "GET /v1/messages/batches/"}
CANCEL = {"openai": "POST /v1/batches/", "anthropic": "POST /v1/messages/batches/"}
# a fault of the server's as `fail_next` (a status) or `answer_next` (a dropped or
# unanswered connection) scripts it
FAULTS = {503: (503, {}), 429: (429, {}), "reset": (200, {"x": "y" * 99}), "stall": (200, {})}


def _fail_reads(server: ProviderServer, fault: int | str, times: int) -> None:
    for _ in range(times):
        if isinstance(fault, int):
            server.fail_next(fault, retry_after="1" if fault == 429 else None, method="GET")
        else:
            status, body = FAULTS[fault]
            server.answer_next(status, body, fault, method="GET")


@pytest.mark.parametrize(
    ("provider", "fault"),
    [("openai", 503), ("anthropic", 429), ("openai", "reset"), ("anthropic", "stall")],
)
async def test_status_reads_failing_for_a_while_are_retried_at_the_next_polls(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str, fault: int | str
) -> None:
    """Six failed reads in a row (half a minute at 5 s) used up the poll step's retries
    and failed the run, the batch left running, billed."""
    # a short timeout only where a read is left unanswered: every answered request must
    # come back within it, on a loaded machine too
    app = _app(database_url, clock, server, timeout=1.0 if fault == "stall" else None)
    batched = _batcher(app, MODELS[provider], 2, poll_every=5, max_wait=3600)
    _fail_reads(server, fault, 6)
    assert (await app.arun(batched, workflow_id="tr")).status is RunStatus.WAITING
    for polls in range(2, 7):
        await _later(app, clock, "tr", 5, polls=polls)
    server.finish_batches()
    await _later(app, clock, "tr", 5, polls=7)
    done = await app.aresult("tr", timeout=10)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert done.value is not None and sorted(done.value) == ["0", "1"]
    assert server.count(STATUS[provider]) >= 7 and server.count(CANCEL[provider]) == 0
    assert len(await app.alist_ai_calls("tr")) == 2
    await app.aclose()


async def test_status_reads_failing_until_max_wait_cancel_the_batch(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 1, poll_every=60, max_wait=300)
    _fail_reads(server, 503, 6)  # every look until max_wait
    assert (await app.arun(batched, workflow_id="tm")).status is RunStatus.WAITING
    for polls in range(2, 6):
        await _later(app, clock, "tm", 60, polls=polls)
    done = await _ended(app, clock, "tm", 60)  # max_wait: the last look fails too; cancelled
    assert done.status is RunStatus.FAILED
    assert "did not finish within max_wait=300 s" in _error(done)
    [batch] = server.state.batches.values()
    assert batch["status"] == "cancelled"
    await app.aclose()


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_status_read_refused_for_good_cancels_the_batch_and_fails_the_run(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS[provider], 1, poll_every=60, max_wait=3600)
    server.fail_next(401, method="GET")  # the key was revoked: looking again cannot help
    with pytest.raises(ai.ProviderError, match="answered 401"):
        await app.arun(batched, workflow_id="pe")
    assert server.count(CANCEL[provider]) == 1  # not left running, billed, unwatched
    rec = await app.aget_record("pe")
    assert rec.status is RunStatus.FAILED
    assert rec.steps[f"ai.batch:{MODELS[provider]}.cancel"].status == "completed"
    await app.aclose()


async def test_a_cancel_failing_for_a_moment_at_max_wait_is_retried(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 1, poll_every=60, max_wait=60)
    assert (await app.arun(batched, workflow_id="cr")).status is RunStatus.WAITING
    server.fail_next(503)
    server.fail_next(429)
    done = await _ended(app, clock, "cr", 60)
    assert "did not finish within max_wait=60 s; it was cancelled" in _error(done)
    assert server.count(CANCEL["openai"]) == 3
    [batch] = server.state.batches.values()
    assert batch["status"] == "cancelled"
    await app.aclose()


async def test_a_cancel_refused_at_max_wait_is_recorded_and_named_in_the_error(
    database_url: str, clock: FakeClock, server: ProviderServer, ai_log: _Caught
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 1, poll_every=60, max_wait=60)
    assert (await app.arun(batched, workflow_id="cf")).status is RunStatus.WAITING
    server.fail_next(403)
    done = await _ended(app, clock, "cf", 60)
    assert done.status is RunStatus.FAILED
    [batch_id] = server.state.batches
    said = _error(done)
    assert f"could not cancel batch {batch_id}" in said and "answered 403" in said, said
    assert "may still be running" in said, said
    [event] = [e for e in done.record.events if e.type == "ai.batch.cancel_failed"]
    assert event.detail["batch_id"] == batch_id and "answered 403" in event.detail["error"]
    [warned] = ai_log.said(f"could not cancel batch {batch_id} of run cf")
    assert warned.levelno == logging.WARNING and "answered 403" in warned.getMessage()
    await app.aclose()


async def test_a_batch_done_behind_a_failed_last_look_is_collected_not_timed_out(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 2, poll_every=60, max_wait=60)
    assert (await app.arun(batched, workflow_id="dl")).status is RunStatus.WAITING
    server.finish_batches()
    server.fail_next(503, method="GET")  # the last look, at max_wait, cannot read it
    done = await _ended(app, clock, "dl", 60)  # the cancel is refused: it completed
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert done.value == {"0": "echo: q0", "1": "echo: q1"}
    # the refusal of a batch that ended is no failure to cancel: not retried, not recorded
    assert server.count(CANCEL["openai"]) == 1
    assert "ai.batch.cancel_failed" not in [e.type for e in done.record.events]
    await app.aclose()


async def test_openai_refuses_to_cancel_a_batch_that_ended(server: ProviderServer) -> None:
    """As the real API does (409, openai.ConflictError): the local server must not
    turn a completed batch back into a cancelled one, its results lost."""
    openai = ai.OpenAI(api_key="k", base_url=server.openai_url)
    request = ai.TextRequest(messages=[ai.Message(role="user", content="q")])
    batch_id = await openai.batch_submit(
        "gpt-4.1-mini", [ai.BatchItem(custom_id="0", request=request)]
    )
    server.finish_batches()
    with pytest.raises(ai.ProviderError, match=r"answered 409.*status 'completed'") as refused:
        await openai.batch_cancel(batch_id)
    assert refused.value.status == 409
    assert (await openai.batch_status(batch_id)).state == "done"
    await openai.aclose()


async def test_a_cancel_refused_when_the_run_is_cancelled_is_logged_and_recorded(
    database_url: str, clock: FakeClock, server: ProviderServer, ai_log: _Caught
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 1, poll_every=60, max_wait=3600)
    assert (await app.arun(batched, workflow_id="rc")).status is RunStatus.WAITING
    [batch_id] = server.state.batches
    server.fail_next(403)  # refused for good: not tried again
    assert await app.acancel("rc") == ["rc"]  # the run is cancelled either way
    [warned] = ai_log.said(f"could not cancel batch {batch_id} of run rc")
    assert warned.levelno == logging.WARNING and "may still be running" in warned.getMessage()
    assert server.count(CANCEL["openai"]) == 1
    rec = await app.aget_record("rc")  # `tether runs show rc` tells the batch may bill on
    assert rec.status is RunStatus.CANCELLED
    [event] = [e for e in rec.events if e.type == "ai.batch.cancel_failed"]
    assert event.message == batch_id
    assert event.detail["batch_id"] == batch_id and event.detail["provider"] == "openai"
    assert "answered 403" in event.detail["error"]
    await app.aclose()


async def _cancelled_unreached(database_url: str, clock: FakeClock, wid: str) -> None:
    """Cancel run `wid` from an App without providers: the run is cancelled, its batch
    left for `cancel_open_batches` to cancel here, on a clock of the test's own."""
    async with App(database_url, clock=clock) as bare:
        assert await bare.acancel(wid, abandon_batches=True) == [wid]


async def test_a_run_cancel_tries_a_cancel_failing_for_a_moment_again(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 1, poll_every=60, max_wait=3600)
    assert (await app.arun(batched, workflow_id="ct")).status is RunStatus.WAITING
    await _cancelled_unreached(database_url, clock, "ct")
    server.fail_next(503)
    server.fail_next(429, retry_after="2")  # waited for: it is within the bound
    waits = FakeClock()
    assert await ai.cancel_open_batches(app.ai, app.store, ["ct"], clock=waits) == 1
    assert server.count(CANCEL["openai"]) == 3
    assert waits.slept == [0.5, 2.0]
    [batch] = server.state.batches.values()
    assert batch["status"] == "cancelled"
    assert "ai.batch.cancel_failed" not in [e.type for e in (await app.aget_record("ct")).events]
    await app.aclose()


async def test_a_run_cancel_gives_up_a_cancel_within_seconds_and_records_it(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    """It runs inside `app.cancel`: a provider asking to wait an hour is not waited
    for past the bound (a few seconds), and the batch that may bill on is recorded."""
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["anthropic"], 1, poll_every=60, max_wait=3600)
    assert (await app.arun(batched, workflow_id="cg")).status is RunStatus.WAITING
    await _cancelled_unreached(database_url, clock, "cg")
    for _ in range(10):
        server.fail_next(429, retry_after="3600")
    waits = FakeClock()
    assert await ai.cancel_open_batches(app.ai, app.store, ["cg"], clock=waits) == 0
    assert 1 < server.count(CANCEL["anthropic"]) <= 4
    assert 0 < sum(waits.slept) <= 5
    [batch_id] = server.state.anthropic_batches
    rec = await app.aget_record("cg")
    [event] = [e for e in rec.events if e.type == "ai.batch.cancel_failed"]
    assert event.detail["batch_id"] == batch_id and event.detail["provider"] == "anthropic"
    assert "answered 429" in event.detail["error"]
    await app.aclose()


async def test_a_run_cancelled_after_its_batch_completed_has_nothing_to_cancel(
    database_url: str, clock: FakeClock, server: ProviderServer, ai_log: _Caught
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 1, poll_every=60, max_wait=3600)
    assert (await app.arun(batched, workflow_id="cc")).status is RunStatus.WAITING
    server.finish_batches()  # before the run's next look
    assert await app.acancel("cc") == ["cc"]
    assert server.count(CANCEL["openai"]) == 1  # refused (409): it ended; not tried again
    assert ai_log.said("could not cancel") == []
    [batch_id] = server.state.batches
    assert ai_log.said(f"batch {batch_id} had ended when tether cancelled it")  # it was seen
    rec = await app.aget_record("cc")
    assert "ai.batch.cancel_failed" not in [e.type for e in rec.events]
    [batch] = server.state.batches.values()
    assert batch["status"] == "completed"
    await app.aclose()


# -- the results of an ended batch, their endpoint down for a while ---------------------

# the request that fetches the results (OpenAI: the output file; Anthropic: the results)
RESULTS = {"openai": r"^/v1/files/[\w-]+/content$", "anthropic": r"/results$"}
RESULTS_STEP = {p: f"ai.batch:{m}.results" for p, m in MODELS.items()}


def _fail_results(server: ProviderServer, provider: str, times: int) -> None:
    for _ in range(times):
        server.fail_next(503, method="GET", path=RESULTS[provider])


async def _fetching(app: App, clock: FakeClock, wid: str) -> RunRecord:
    """Let the results fetch wait out its timer while the run waits (or ended);
    the record."""
    for _ in range(30):
        rec = await app.aget_record(wid)
        if rec.status is not RunStatus.WAITING:
            return rec
        before = len([k for k in rec.steps if ".results" in k])
        clock.advance(300)  # longer than a fetch waits
        await app.afire_due_timers()

        async def fetched(before: int = before) -> bool:
            rec = await app.aget_record(wid)
            made = len([k for k in rec.steps if ".results" in k])
            return rec.status is not RunStatus.RUNNING and (rec.status.terminal or made > before)

        await eventually(fetched, timeout=10)
    raise AssertionError(f"run {wid} still waits")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_results_unreadable_for_minutes_are_fetched_again_on_the_timer(
    database_url: str, clock: FakeClock, server: ProviderServer, provider: str
) -> None:
    """The fetch's step retries (half a minute) ran out and failed the run: the
    completed requests' results, billed, never recorded."""
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS[provider], 2, poll_every=60, max_wait=3600)
    assert (await app.arun(batched, workflow_id="ro")).status is RunStatus.WAITING
    server.finish_batches()
    _fail_results(server, provider, 8)  # a quarter of an hour and more
    await _later(app, clock, "ro", 60, polls=2)  # done; its results not to be had
    await _fetching(app, clock, "ro")
    done = await app.aresult("ro", timeout=10)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    assert done.value == ({"0": "echo: q0", "1": "echo: q1"} if provider == "openai" else
                          {"0": "echo", "1": "echo"})  # fmt: skip
    assert len([k for k in done.record.steps if ".results" in k]) == 9
    calls = await app.alist_ai_calls("ro")
    assert sorted(c.custom_id or "" for c in calls) == ["0", "1"]  # each once
    assert server.count(CANCEL[provider]) == 0
    await app.aclose()


async def test_results_unreadable_for_an_hour_fail_the_run_and_rerun_from_fetches_them(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 2, poll_every=60, max_wait=3600)
    assert (await app.arun(batched, workflow_id="rl")).status is RunStatus.WAITING
    server.finish_batches()
    _fail_results(server, "openai", 100)
    await _later(app, clock, "rl", 60, polls=2)
    rec = await _fetching(app, clock, "rl")
    assert rec.status is RunStatus.FAILED
    assert rec.last_error is not None
    said = rec.last_error.message
    [batch_id] = server.state.batches
    step = RESULTS_STEP["openai"]
    assert f"batch {batch_id}" in said and "60 minutes" in said, said
    assert f"app.rerun_from('rl', {step!r})" in said, said
    assert await app.alist_ai_calls("rl") == []  # nothing recorded, nothing twice later
    server.state.failures.clear()  # the endpoint is back
    again = await app.arerun_from("rl", step)
    assert again.status is RunStatus.COMPLETED, again.record.last_error
    assert again.value == {"0": "echo: q0", "1": "echo: q1"}
    calls = await app.alist_ai_calls("rl")
    assert sorted((c.batch_id, c.custom_id) for c in calls) == [(batch_id, "0"), (batch_id, "1")]
    assert server.state.counts["POST /v1/batches"] == 1  # the batch was not submitted again
    await app.aclose()


class _OlderProvider:
    """A provider written before batches could be found again: no `batch_find`, and a
    `batch_submit` that takes no tag (it must go on working)."""

    def __init__(self, inner: ai.FakeModel) -> None:
        self._inner = inner
        self.price_id = inner.price_id
        self.check, self.aclose = inner.check, inner.aclose
        self.generate, self.embed = inner.generate, inner.embed
        self.batch_status, self.batch_results = inner.batch_status, inner.batch_results
        self.batch_cancel = inner.batch_cancel

    async def batch_submit(self, model: str, items: list[ai.BatchItem]) -> str:
        return await self._inner.batch_submit(model, items)


async def test_a_provider_without_batch_find_still_batches(
    database_url: str, clock: FakeClock
) -> None:
    older = _OlderProvider(ai.FakeModel(["a", "b"]))
    app = App(database_url, clock=clock, ai=ai.Providers(older=older), inline_wait=0)
    batched = _batcher(app, "older:m", 2, poll_every=60, max_wait=600)
    assert (await app.arun(batched, workflow_id="old")).status is RunStatus.WAITING
    done = await _ended(app, clock, "old", 60)
    assert done.value == {"0": "a", "1": "b"}
    await app.aclose()


async def _ended(app: App, clock: FakeClock, wid: str, seconds: float) -> RunResult[Any]:
    """Let `seconds` pass, fire the timers due, and wait for the run to end."""
    clock.advance(seconds)
    await app.afire_due_timers()
    return await app.aresult(wid, timeout=10)


def _error(done: RunResult[Any]) -> str:
    assert done.record.last_error is not None
    return done.record.last_error.message


async def _one_result_recorded(app: App, wid: str) -> None:
    """Request 0 completed (its row priced, in the usage), request 1 did not."""
    calls = sorted(await app.alist_ai_calls(wid), key=lambda c: c.custom_id or "")
    assert [(c.custom_id, c.error is None) for c in calls] == [("0", True), ("1", False)]
    assert calls[0].cost_micro_usd and calls[0].output_tokens
    [usage] = await app.ausage(run=wid)
    assert (usage.calls, usage.cost_micro_usd) == (2, calls[0].cost_micro_usd)


async def test_a_rerun_submit_retried_makes_its_own_batch_not_the_earlier_runs(
    database_url: str, clock: FakeClock, server: ProviderServer
) -> None:
    app = _app(database_url, clock, server)
    batched = _batcher(app, MODELS["openai"], 1, poll_every=60, max_wait=3600)
    assert (await app.arun(batched, workflow_id="rr")).status is RunStatus.WAITING
    server.finish_batches()
    await _later(app, clock, "rr", 60, polls=2)
    [first] = list(server.state.batches)
    server.fail_next(503)  # the rerun's first attempt fails: the second looks for a batch
    await app.arerun_from("rr", "ai.batch:openai:gpt-4.1-mini")
    assert server.state.counts["GET /v1/batches"] == 1  # looked: only the earlier run's
    assert server.state.counts["POST /v1/batches"] == 2
    [_, second] = list(server.state.batches)
    server.finish_batches()
    await _later(app, clock, "rr", 60, polls=2)
    done = await app.aresult("rr", timeout=10)
    assert done.status is RunStatus.COMPLETED, done.record.last_error
    calls = await app.alist_ai_calls("rr")
    assert sorted(c.batch_id or "" for c in calls) == sorted([first, second])
    await app.aclose()


# -- a crash between the provider's answer and the step's record -------------------------

FLOWS = textwrap.dedent(
    """
    import os, signal
    import tether
    from tether import ai

    class KillAfterSubmit:
        async def intercept(self, call, proceed):
            result = await proceed()  # the provider accepted the batch ...
            if os.environ.get("KILL") and call.name == "ai.batch:openai:gpt-4.1-mini":
                os.kill(os.getpid(), signal.SIGKILL)  # ... and the step is not recorded
            return result

    providers = ai.Providers(openai=ai.OpenAI(api_key="k", base_url=os.environ["OPENAI_URL"]))
    app = tether.App(os.environ["DB"], ai=providers, interceptors=[KillAfterSubmit()],
                     inline_wait=0)

    @app.workflow(name="batched")
    async def batched(wf: tether.Workflow) -> dict:
        res = await wf.ai.batch("openai:gpt-4.1-mini", ["a", "b"], poll_every=0.2, max_wait=60)
        return {k: v.text for k, v in res.items.items()}
    """
)


def test_a_submit_killed_after_the_provider_accepted_it_takes_that_batch_again(
    tmp_path: Path, database_url: str, server: ProviderServer
) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    env = {**os.environ, "DB": database_url, "OPENAI_URL": server.openai_url}
    env["PYTHONPATH"] = child_pythonpath(tmp_path)
    run = "import flows; print(flows.app.run(flows.batched, workflow_id='bk').value)"

    def child(**extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", run]
        return subprocess.run(cmd, env={**env, **extra}, capture_output=True, text=True)

    killed = child(KILL="1")
    assert killed.returncode == -9, killed.stderr
    [(batch_id, batch)] = server.state.batches.items()
    # tagged with the run's creation too: a run reusing a pruned run's id must not take
    # the pruned run's batch (tests/ai/test_batch_walk2_reused_run.py)
    tag = {k: v for k, v in batch["metadata"].items() if k != "tether_run_created"}
    assert tag == {"tether_run": "bk", "tether_step": "ai.batch:openai:gpt-4.1-mini"}
    assert batch["metadata"]["tether_run_created"].isdigit()
    server.finish_batches()
    resumed = child()
    assert resumed.returncode == 0, resumed.stderr
    assert server.state.counts["POST /v1/batches"] == 1  # one batch at the provider, paid once
    assert resumed.stdout.strip() == str({"0": "echo: a", "1": "echo: b"})
    with App(database_url) as app:
        calls = app.list_ai_calls("bk")
        events = app.get_record("bk").events
    assert {c.batch_id for c in calls} == {batch_id} and len(calls) == 2
    submitted = [e.detail["batch_id"] for e in events if e.type == "ai.batch.submitted"]
    assert submitted == [batch_id]  # tracked, so a cancel of the run cancels it
