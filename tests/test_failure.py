"""Errors at rest: `ErrorRecord` and its one codec (`encode_error`, `decode_error`)."""

from __future__ import annotations

import contextlib
import json
import logging

import pytest

import tether
from tether import App, ErrorRecord, RetryPolicy, Workflow
from tether._failure import (
    MAX_CAUSES,
    decode_error,
    encode_error,
    encode_record,
    revive_error,
)
from tether.ai import ProviderError


class Outer(Exception):
    pass


def _chained() -> Outer:
    try:
        try:
            raise KeyError("k")
        except KeyError as exc:
            raise ValueError("bad value") from exc
    except ValueError as exc:
        try:
            raise Outer("it broke") from exc
        except Outer as outer:
            return outer


def test_round_trip_with_its_cause_chain() -> None:
    record = decode_error(encode_error(_chained(), retryable=True))
    assert record is not None
    assert [(e.type, e.message) for e in record.causes()] == [
        ("Outer", "it broke"),
        ("ValueError", "bad value"),
        ("KeyError", "'k'"),
    ]
    assert (record.module, record.qualname) == (__name__, "Outer")
    assert record.retryable is True  # the verdict given; causes were not judged
    assert [e.retryable for e in record.causes()[1:]] == [None, None]
    assert record.traceback is not None and "KeyError" in record.traceback  # the whole chain
    assert [e.traceback for e in record.causes()[1:]] == [None, None]  # shown once, above
    assert decode_error(encode_record(record)) == record
    assert ErrorRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_the_cause_chain_is_bounded() -> None:
    exc: BaseException = RuntimeError("0")
    for i in range(1, 50):
        try:
            raise RuntimeError(str(i)) from exc
        except RuntimeError as e:
            exc = e
    record = ErrorRecord.of(exc)
    assert len(record.causes()) == MAX_CAUSES + 1
    assert record.causes()[-1].message == str(49 - MAX_CAUSES)
    deep: dict[str, object] = {"type": "E", "message": "m"}
    for _ in range(50):
        deep = {"type": "E", "message": "m", "cause": deep}
    assert len(ErrorRecord.from_dict(deep).causes()) == MAX_CAUSES + 1


def test_rows_written_by_an_older_tether_still_decode() -> None:
    old = json.dumps(
        {
            "type": "PermissionError",
            "module": "builtins",
            "qualname": "PermissionError",
            "message": "denied",
            "traceback": "Traceback ...",
        }
    )
    assert decode_error(old) == ErrorRecord(
        "PermissionError", "denied", "builtins", "PermissionError", None, "Traceback ...", None
    )
    cancelled = '{"type": "Cancelled", "message": "stop", "traceback": null}'
    assert decode_error(cancelled) == ErrorRecord("Cancelled", "stop")
    assert decode_error('"e"') == ErrorRecord("Exception", "e")  # a bare JSON value
    assert decode_error("[1, 2]") == ErrorRecord("Exception", "[1, 2]")
    assert decode_error("not json") == ErrorRecord("Exception", "not json")
    assert decode_error("{}") == ErrorRecord("Exception", "")
    assert decode_error('{"type": 3, "retryable": "yes"}') == ErrorRecord("Exception", "")
    assert decode_error(None) is None and decode_error("null") is None


def test_retryable_as_the_exception_says_it() -> None:
    assert ErrorRecord.of(ProviderError("429", retryable=True)).retryable is True
    assert ErrorRecord.of(ProviderError("400")).retryable is False
    assert ErrorRecord.of(ValueError("x")).retryable is None
    assert ErrorRecord.of(ProviderError("429", retryable=True), retryable=False).retryable is False


def test_a_revived_error_is_of_its_recorded_class() -> None:
    exc = revive_error("w", decode_error(encode_error(PermissionError("denied"))))
    assert type(exc) is PermissionError and str(exc) == "denied"
    gone = revive_error("w", ErrorRecord("Gone", "m", module="nowhere.at.all"))
    assert isinstance(gone, tether.RunFailedError) and "m" in str(gone)
    assert isinstance(revive_error("w", None), Exception)


class Declined(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(f"{code}: {why}")
        self.code, self.why = code, why
        self.detail = {"lines": [1, 2], "ok": False, "cost": 0.5}
        self.pair = (1, 2)  # kept in tagged form: JSON alone brings back a list
        self.handle = object()  # not JSON at all: left out
        self._private = "kept to itself"


def test_a_revived_error_keeps_its_public_attributes_that_json_holds() -> None:
    """An `except` clause that reads `exc.status` works on the first run and on every
    ask after (before: AttributeError, the revived exception had only its message)."""
    record = decode_error(encode_error(Declined(402, "card declined")))
    assert record is not None
    assert record.attributes == {
        "code": 402,
        "why": "card declined",
        "detail": {"lines": [1, 2], "ok": False, "cost": 0.5},
        "pair": (1, 2),
    }
    exc = revive_error("w", record)
    assert type(exc) is Declined and str(exc) == "402: card declined"
    assert (exc.code, exc.why, exc.detail) == (402, "card declined", record.attributes["detail"])
    assert exc.pair == (1, 2) and not hasattr(exc, "_private")
    provider = revive_error("w", ErrorRecord.of(ProviderError("gone", status=404, request_id="r1")))
    assert isinstance(provider, ProviderError)
    assert (provider.status, provider.retryable, provider.request_id) == (404, False, "r1")


async def test_a_failed_run_asked_again_raises_with_the_same_attributes(app: App) -> None:
    @app.workflow
    async def pays(wf: Workflow) -> None:
        await wf.step("charge", lambda: 1)
        raise Declined(402, "card declined")

    for _ in range(2):  # the run, then the run asked again (its record)
        with pytest.raises(Declined) as caught:
            await app.arun(pays, workflow_id="p1")
        assert (caught.value.code, caught.value.why) == (402, "card declined")


async def test_steps_record_whether_their_policy_would_retry(app: App) -> None:
    policy = RetryPolicy(attempts=2, backoff=0, jitter=0, non_retryable=(PermissionError,))

    def flaky() -> None:
        raise ValueError("again") from KeyError("why")

    def fatal() -> None:
        raise PermissionError("never")

    @app.workflow
    async def wf_(wf: Workflow) -> None:
        with contextlib.suppress(ValueError):
            await wf.step("flaky", flaky, retry=policy)
        await wf.step("fatal", fatal, retry=policy)

    with pytest.raises(PermissionError):
        await app.arun(wf_, workflow_id="steps")
    rec = await app.aget_record("steps")
    fatal_error = rec.steps["fatal"].error
    assert fatal_error is not None and fatal_error.retryable is False
    flaky_error = rec.steps["flaky"].error
    assert rec.steps["flaky"].attempts == 2 and flaky_error is not None
    assert flaky_error.retryable is True  # the policy would retry it; its attempts ran out
    assert flaky_error.cause == ErrorRecord(
        "KeyError", "'why'", "builtins", "KeyError", attributes={"args": ["why"]}
    )  # its args kept: str() of a KeyError is not its arg
    assert rec.last_error is not None and rec.last_error.type == "PermissionError"
    assert rec.last_error.retryable is None  # a run's own failure: no policy judged it
    again = tether.RunRecord.from_dict(rec.to_dict())
    assert again.last_error == rec.last_error and again.steps == rec.steps


class Unprintable(Exception):
    """An error whose message cannot be built (a library's __str__ reading a missing field)."""

    def __str__(self) -> str:
        raise AttributeError("no field 'detail'")


async def test_a_step_error_whose_str_fails_is_recorded_and_retried(app: App) -> None:
    calls: list[int] = []

    def breaks() -> None:
        calls.append(1)
        raise Unprintable("x")

    @app.workflow
    async def flow(wf: Workflow) -> None:
        await wf.step("s", breaks, retry=RetryPolicy(attempts=3, backoff=0, jitter=0))

    for _ in range(2):  # the run, then the run asked again (its record)
        with pytest.raises(Unprintable):  # its own error, not tether's AttributeError
            await app.arun(flow, workflow_id="unprintable")
    assert len(calls) == 3  # retried as the policy says, and not again when asked again
    rec = await app.aget_record("unprintable")
    step = rec.steps["s"]
    assert step.status is tether.StepStatus.FAILED and step.attempts == 3
    assert step.error is not None and step.error.type == "Unprintable"
    assert step.error.message == "<exception str() failed>"  # as Python's tracebacks say
    assert rec.last_error is not None and rec.last_error.type == "Unprintable"


async def test_a_failed_rerun_raises_once_and_logs_no_background_failure(
    app: tether.App, caplog: pytest.LogCaptureFixture
) -> None:
    # the rerun's wake-up also started a background drive, which found the failure the
    # rerun recorded and logged it as an ERROR with a traceback, beside the raise
    calls: list[int] = []

    async def flaky(wf: tether.Workflow) -> None:
        await wf.step("a", lambda: 1)

        def b() -> None:
            calls.append(1)
            raise ValueError(f"boom {len(calls)}")

        await wf.step("b", b)

    with pytest.raises(ValueError, match="boom 1"):
        await app.arun(flaky, workflow_id="f1")
    with caplog.at_level(logging.INFO, logger="tether"), pytest.raises(ValueError, match="boom 2"):
        await app.arerun_from("f1", "b")
    await app.aclose()  # any background drive has finished
    assert calls == [1, 1]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_a_run_started_in_the_background_that_fails_is_logged(
    app: tether.App, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(wf: tether.Workflow) -> None:
        await wf.step("a", _raise_value_error)

    with caplog.at_level(logging.INFO, logger="tether"):
        await app.astart(broken, workflow_id="bg")
        await app.aresult("bg", timeout=30)
        await app.aclose()
    assert "run bg failed" in caplog.text


def _raise_value_error() -> None:
    raise ValueError("broken")


@pytest.mark.parametrize(("text", "kept"), [("a\x00b", "a\\x00b"), ("a\ud800b", "a\\ud800b")])
async def test_an_error_whose_text_a_store_cannot_keep_fails_its_run(
    app: App, text: str, kept: str
) -> None:
    # a NUL (PostgreSQL keeps none) or a lone surrogate (no UTF-8) in the message: the
    # failure could not be written, and the run stayed running, failing at each drive
    @app.workflow(name="says-nul")
    async def flow(wf: Workflow) -> None:
        def step() -> None:
            raise RuntimeError(text)

        await wf.step("s", step, retry=RetryPolicy(attempts=1))

    with pytest.raises(RuntimeError):
        await app.arun(flow, workflow_id="says-nul")
    rec = await app.aget_record("says-nul")
    assert rec.status is tether.RunStatus.FAILED
    assert rec.last_error is not None and rec.last_error.message == kept
    assert rec.steps["s"].error is not None and rec.steps["s"].error.message == kept
    assert any(kept in (e.message or "") for e in rec.events if e.type == "workflow.failed")
