"""The orchestrator's side of one invocation: sign, send, read the streamed answer.

Wire timestamps and deadlines are wall-clock unix seconds (`time.time()`), the
time two machines share; the App's clock (fake in tests) is not used here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
from pydantic import ValidationError

from .._signatures import SIGNATURE, TIMESTAMP
from ..errors import NotSerializableError, explain_validation
from ..kernel import sign
from ..serde import dump_json
from ._asgi import StreamingASGI
from ._errors import (
    RemoteDeadlineError,
    RemoteRefusedError,
    RemoteTooLargeError,
    RemoteUnavailableError,
    RemoteVersionError,
    listed,
)
from ._wire import MAX_BODY, PROTOCOL_HEADER, Answer, Invocation, Line, versions_text

__all__ = ["OnLine", "Reply", "call", "encode", "parse_line", "shown_url"]

# a line, and the values of the JSON texts it carries, by where (see `parse_line`)
OnLine = Callable[[Line, Mapping[str, Any]], Awaitable[None]]

_VERSION_CODES = ("protocol_version_mismatch", "workflow_version_mismatch")
# a tether tenant's refusals (`_handler`'s and its signature check's), by status. Any
# other is another server's: a url naming tether's own server ("401 unauthenticated:
# send an API token", "422 invalid_request") failed the run with that advice alone
_TENANT_REFUSALS = frozenset({
    *((401, c) for c in ("signature_missing", "bad_timestamp", "bad_signature",
                         "stale_timestamp", "replayed")),
    (400, "invalid_json"), (400, "invalid_request"), (404, "workflow_not_found"),
    (408, "deadline_exceeded"), (409, "workflow_version_mismatch"),
    (426, "protocol_version_mismatch"),
})  # fmt: skip
# the longest answer line read: the answer carries the run's output, and a tenant of an
# earlier release the run's journal too (at most MAX_BODY); a longer one fails the run
# rather than fill the orchestrator's memory
MAX_LINE = 4 * MAX_BODY
# the most of a refusal's body read: a tether tenant's is a small JSON object, a proxy's
# an error page; only its start is shown
MAX_REFUSAL = 1024 * 1024
_EMPTY = (
    "it answered 200 with an empty body (content-length: 0), which no tether tenant sends "
    "(a tenant streams its answer): this url is probably not a tether tenant's (is "
    "tether.remote.handler served at it?)"
)


@dataclass(frozen=True)
class Reply:
    """The tenant's answer, and its output parsed (by the check: not parsed again)."""

    answer: Answer
    output: Any = None


def encode(inv: Invocation) -> bytes:
    """The body of `inv`; `RemoteTooLargeError` naming its largest parts when it is over
    what a tenant reads (it would answer 413: the run could never go on)."""
    body = inv.model_dump_json().encode()
    if len(body) > MAX_BODY:
        what = f"invocation {inv.invocation} of run {inv.run_id!r} ({_largest(inv, len(body))})"
        raise RemoteTooLargeError.of(what, len(body), MAX_BODY)
    return body


def _largest(inv: Invocation, size: int) -> str:
    """What makes an invocation of `size` bytes large: its largest parts, or its steps
    in all when none of them is."""
    steps = [*inv.journal.steps, *inv.journal.compensations]
    parts = [("its input", len(inv.input or "")), ("its state", len(inv.state or ""))]
    parts += [(f"step {s.key!r}", len(s.result)) for s in steps]
    parts += [(f"wait {w.key!r}", len(w.payload or "")) for w in inv.journal.waits]
    top = sorted(parts, key=lambda p: -p[1])[:3]
    large = [f"{name} {n:,} characters" for name, n in top if n * 100 >= size]
    if large:
        return "largest: " + ", ".join(large)
    total = sum(len(s.result) for s in steps)
    many = f"{len(steps):,} steps" if len(steps) != 1 else "1 step"
    return f"the results of its {many}: {total:,} characters in all"


def shown_url(url: str) -> str:
    """`url` as messages and records show it: credentials in it (``user:password@``,
    sent as Basic auth to a proxy in front of the tenant) replaced by ``***``. They
    were recorded as the marker step's result and in the run's errors and events,
    for anyone who reads runs (the HTTP API, the dashboard) to see."""
    scheme, sep, rest = url.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if not sep or "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{rest[end:]}"


def _headers(secret: str, body: bytes, protocol: int) -> dict[str, str]:
    ts = str(int(time.time()))
    return {
        "content-type": "application/json",
        TIMESTAMP: ts,
        SIGNATURE: sign(secret, ts, body),
        PROTOCOL_HEADER: str(protocol),
    }


async def call(
    url: str,
    secret: str,
    inv: Invocation,
    on_line: OnLine,
    transport: httpx.AsyncBaseTransport | None = None,
    body: bytes | None = None,
) -> Reply:
    """Send `inv` (`body`: its `encode`, when already made) and return the tenant's
    answer; each line before it goes to `on_line` as it arrives (and is recorded
    before the next one is read).

    `RemoteTooLargeError` before sending what a tenant would not read,
    `RemoteRefusedError` for a refusal, `RemoteUnavailableError` (or its
    `RemoteDeadlineError`) when no answer came, by the deadline at the latest. The
    deadline cuts only the reading: every line received whole before it is recorded
    (a line cut in two is not), its recording never cut short.
    """
    body = encode(inv) if body is None else body
    remaining = inv.deadline - time.time()
    if remaining <= 0:
        raise RemoteDeadlineError(
            f"invocation {inv.invocation}: its deadline passed before it was sent"
        )
    if isinstance(transport, httpx.ASGITransport):  # httpx's answers only once whole
        transport = StreamingASGI(transport)
    elif transport is not None:  # the registration's, shared by its runs in flight
        transport = _Borrowed(transport)
    cut = asyncio.get_running_loop().time() + remaining
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            return await _exchange(client, url, secret, inv, body, on_line, cut)
    except httpx.HTTPError as exc:
        raise RemoteUnavailableError(
            f"invocation {inv.invocation}: {shown_url(url)} unreachable: "
            f"{type(exc).__name__}: {exc}"
        ) from None


class _Borrowed(httpx.AsyncBaseTransport):
    """A transport given to ``app.remote_workflow``, lent to one invocation's client.

    The client closed it on leaving, and so closed every connection of its pool: one
    run's invocation ending cut those of the other runs in flight through it (taken
    as unanswered, they were sent again and their running steps ran twice). It is
    closed once the last invocation through it ends, as it was after each one."""

    _lent: ClassVar[dict[httpx.AsyncBaseTransport, int]] = {}  # its invocations in flight

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self._lent[inner] = self._lent.get(inner, 0) + 1

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        left = self._lent.pop(self._inner) - 1
        if left:
            self._lent[self._inner] = left
        else:
            await self._inner.aclose()


async def _exchange(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    inv: Invocation,
    body: bytes,
    on_line: OnLine,
    cut: float,
) -> Reply:
    request = client.build_request(
        "POST", url, content=body, headers=_headers(secret, body, inv.protocol), timeout=None
    )
    url = shown_url(url)  # sent with its credentials; every message shows it without
    late = RemoteDeadlineError(f"invocation {inv.invocation}: no answer from {url} by its deadline")
    try:
        async with asyncio.timeout_at(cut):
            resp = await client.send(request, stream=True)
    except TimeoutError:
        raise late from None
    try:
        if resp.status_code != 200:
            try:
                async with asyncio.timeout_at(cut):
                    text = await _refusal_body(resp)
            except TimeoutError:
                raise late from None
            raise _refusal(url, resp, text, inv, len(body))
        if resp.headers.get("content-length", "").strip() == "0":
            # a tenant streams its lines: a webhook receiver, say, at the wrong url was
            # taken for a tenant cut short and invoked again for most of an hour
            raise RemoteRefusedError(url, 200, "invalid_answer", _EMPTY, None)
        return await _read(resp, url, inv, on_line, cut, late)
    finally:
        await resp.aclose()


async def _read(
    resp: httpx.Response,
    url: str,
    inv: Invocation,
    on_line: OnLine,
    cut: float,
    late: RemoteDeadlineError,
) -> Reply:
    """The answer line, each line before it handed to `on_line` once received whole;
    only waiting for more is cut at the deadline."""
    chunks, pending, kinds = resp.aiter_bytes(), bytearray(), list[str]()

    async def noted(line: Line, values: Mapping[str, Any]) -> None:
        kinds.append(line.type)
        await on_line(line, values)

    while True:
        try:
            async with asyncio.timeout_at(cut):
                chunk = await anext(chunks, None)
        except TimeoutError:
            raise late from None  # what is pending is part of a line: not recorded
        if chunk is None:
            break
        # only the new chunk is searched for line ends: a long line arriving in many
        # chunks was copied and split again whole for each one (quadratic: a 16 MB
        # result in 4 KB chunks took 15 s, past the deadline, and ran again each time)
        if b"\n" not in chunk:
            pending += chunk
            _check_length(pending, url, inv)
            continue
        first, *whole, rest = chunk.split(b"\n")
        pending += first
        _check_length(pending, url, inv)
        for raw in (bytes(pending), *whole):
            answer = await _line(raw, url, inv, noted)
            if answer is not None:
                return answer
        pending = bytearray(rest)
    if pending.strip():  # a last line without its newline: whole if it parses
        try:
            answer = await _line(bytes(pending), url, inv, noted)
        except RemoteRefusedError:
            # every protocol line is a JSON object: text that does not begin as one is no
            # line cut in two (an HTML page answered 200 was invoked again 100 times)
            if not pending.lstrip().startswith(b"{"):
                raise
            raise RemoteUnavailableError(
                f"invocation {inv.invocation}: {url} ended its answer in the middle of a line"
            ) from None
        if answer is not None:
            return answer
    # the last line, whole without its newline, was recorded: it said "in the middle of
    # a line", as if a line had been cut and lost
    after = f" after {_a(kinds[-1])} line" if kinds else ""
    raise RemoteUnavailableError(
        f"invocation {inv.invocation}: {url} ended its answer{after} without a status"
    )


def _a(kind: str) -> str:
    """A line's type with its article: "a 'step'", "an 'event'"."""
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind!r}"


async def _refusal_body(resp: httpx.Response) -> bytes:
    """The first `MAX_REFUSAL` bytes of a refusal's body, the rest left unread: a server
    answering 500 with an endless body was read into memory until the deadline, and the
    run was told the tenant had not answered in time (to raise deadline=)."""
    kept, chunks = bytearray(), resp.aiter_bytes()
    while len(kept) < MAX_REFUSAL and (chunk := await anext(chunks, None)) is not None:
        kept += chunk
    return bytes(kept[:MAX_REFUSAL])


def _check_length(pending: bytearray, url: str, inv: Invocation) -> None:
    """`RemoteTooLargeError` once a line is longer than any this orchestrator reads: a
    tenant that sent bytes without a line end was read into memory until the deadline
    (4 s of it: 600 MB). A tenant's step results are at most `MAX_BODY` in all (it
    fails a step beyond), so only a run's own output can make a legitimate line long."""
    if len(pending) <= MAX_LINE:
        return
    begins = bytes(pending[:120]).decode(errors="replace")
    raise RemoteTooLargeError(
        f"a line of the answer from {url} to invocation {inv.invocation} of run "
        f"{inv.run_id!r} is over {MAX_LINE:,} bytes, the longest line read (it begins "
        f"{begins!r}): a tenant of this release sends no step result that large; if it is "
        f"the run's output, {RemoteTooLargeError.FIX}",
        len(pending),
        MAX_LINE,
    )


async def _line(raw: bytes, url: str, inv: Invocation, on_line: OnLine) -> Reply | None:
    """The answer if `raw` is it; any other line goes to `on_line`."""
    if not raw.strip():
        return None
    try:
        line, values = parse_line(raw)
    except ValueError as exc:
        text = raw[:200].decode(errors="replace")
        raise RemoteRefusedError(
            url, 200, "invalid_answer", f"not a protocol line ({str(exc)[:400]}): {text!r}", None
        ) from None
    if line.type == "answer" and line.answer is not None:
        return Reply(line.answer, values.get("answer.output"))
    if line.type == "aborted":
        what = RemoteDeadlineError if "deadline" in (line.reason or "") else RemoteUnavailableError
        why = line.reason or "it gave no reason (see the tenant's log)"
        raise what(f"invocation {inv.invocation}: the tenant stopped: {why}")
    await on_line(line, values)
    return None


def parse_line(raw: bytes) -> tuple[Line, dict[str, Any]]:
    """The line `raw` holds, parsed once, and the values of the JSON texts it carries
    by where they are (``answer.output``, ``state`` ...), each parsed once; `ValueError`
    saying what is wrong unless every part of it is the protocol's and what the store
    can keep (a key, a name or an error too: the whole line is checked)."""
    try:
        text = raw.decode()  # json.loads would take UTF-16 and a BOM too: not the protocol
    except UnicodeDecodeError:
        raise ValueError("the line is not UTF-8 text") from None
    data = _parse("the line", text)
    _check_json("the line", data)
    try:
        line = Line.model_validate(data)
    except ValidationError as exc:
        raise ValueError(explain_validation(exc)) from None
    _check_event(line.event)
    _check_attempt_error(line)
    if line.answer is not None and line.answer.status == "waiting" and not line.answer.waitpoints:
        # it failed the run as the body's own error ("RemoteWorkflowError: ProtocolError")
        raise ValueError("a 'waiting' answer names no waitpoint to wait on")
    values: dict[str, Any] = {}
    for where, text in _json_texts(line):
        values[where] = value = _parse(where, text)
        _check_json(where, value)
    return line, values


def _parse(where: str, text: str) -> Any:
    """`text` parsed; `ValueError` if it is not JSON text (or nests past the recursion
    limit, which raised RecursionError, not a protocol error)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{where} is nested too deep") from None
    except ValueError:
        raise ValueError(f"{where} is not JSON text") from None


def _check_json(where: str, value: Any) -> None:
    """`ValueError` unless the parsed `value` is what the store can keep: Python's
    parser takes NaN, Infinity, a NUL character and a lone surrogate, which
    PostgreSQL refuses (the write failed on every drive and the run stayed running
    for good), and nesting past `serde.MAX_DEPTH`."""
    try:
        dump_json(value, what=where)
    except NotSerializableError as exc:
        raise ValueError(str(exc)) from None


def _check_attempt_error(line: Line) -> None:
    """A failed attempt's error, when it is JSON text, is recorded as it is: it must be
    what the store keeps (a ``\\u0000`` or a NaN in it failed the write on PostgreSQL at
    every drive, the run left running); other text is recorded as an error's message."""
    error = line.attempt.error if line.attempt is not None else None
    if error is None:
        return
    try:
        value = json.loads(error)
    except RecursionError:
        raise ValueError("attempt.error is nested too deep") from None
    except ValueError:
        return  # not JSON: `Recorder` records it as the message of an error
    _check_json("attempt.error", value)


def _check_event(event: dict[str, Any] | None) -> None:
    """An event line names its type (a non-empty string) and a message string or
    none: ``{"type": 5}`` was recorded as an event of type ``"5"``."""
    if event is None:
        return
    kind, message, detail = event.get("type"), event.get("message"), event.get("detail")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"event.type must be a non-empty string, got {kind!r}"[:200])
    if not isinstance(message, str | None) or not isinstance(detail, str | None):
        raise ValueError("event.message and event.detail must be strings (detail JSON text)")


def _json_texts(line: Line) -> Iterator[tuple[str, str]]:
    """The line's fields that carry JSON text, by where they are."""
    if line.step is not None:
        yield "step.result", line.step.result
        for event in line.step.events or ():
            if isinstance(event.get("detail"), str):
                yield "step.events[].detail", event["detail"]
        if line.step.state is not None:
            yield "step.state", line.step.state
    if line.event is not None and isinstance(line.event.get("detail"), str):
        yield "event.detail", line.event["detail"]
    if line.state is not None:
        yield "state", line.state
    answer = line.answer
    if answer is not None and answer.output is not None:
        yield "answer.output", answer.output
    points = [*(answer.waitpoints if answer else ()), *(p for p in (line.child, line.wait) if p)]
    for wp in points:
        for name, text in (("input", wp.input), ("match", wp.match)):
            if text is not None:
                yield f"waitpoint {wp.key!r} {name}", text


def _retry_after(value: str | None) -> float | None:
    """The seconds a ``Retry-After`` asks for (a number, or an HTTP date); None when it
    is absent or unreadable. It was ignored: a rate limit in front of the tenant got
    the next invocation at the back-off's own pace, and refused it again."""
    if value is None:
        return None
    try:
        return min(max(0.0, float(value)), _MOST_RETRY_AFTER)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - time.time()), _MOST_RETRY_AFTER)


_MOST_RETRY_AFTER = 3600.0  # a longer ask is taken as an hour: the invocations are capped


def _refusal(url: str, resp: httpx.Response, body: bytes, inv: Invocation, size: int) -> Exception:
    """The error of a refusal; `body` is the answer's, `size` the invocation's."""
    invocation, status = inv.invocation, resp.status_code
    try:
        error: Any = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, too deep
        error = None
    if not isinstance(error, dict):  # not a tether tenant's refusal (a proxy's, say)
        error = {}
    code = str(error.get("code", "http_error"))
    message = str(error.get("message", body[:200].decode(errors="replace")))
    if status >= 500 or status == 429:  # 429: a rate limit in front of it
        return RemoteUnavailableError(
            f"invocation {invocation}: {url} answered {status}: {message}",
            _retry_after(resp.headers.get("retry-after")),
        )
    if (status, code) == (401, "replayed"):
        # this orchestrator signs each invocation afresh: a copy reached the tenant first
        # (a proxy retrying it, say), and its answer went elsewhere. The run failed for
        # good; a new invocation, with a signature of its own, is answered
        return RemoteUnavailableError(
            f"invocation {invocation}: {url} answered 401 replayed ({message}): a copy of "
            "it reached the tenant first (is a proxy in front of it retrying requests?)"
        )
    if status == 413:  # a tenant of another release, or a proxy in front of it
        return RemoteTooLargeError(
            f"the tenant at {url} (or a proxy in front of it) refused invocation {invocation} "
            f"of run {inv.run_id!r}, {size:,} bytes, as too large (413 {code}: "
            f"{message[:200]}); raise the proxy's limit on request bodies (a tenant of this "
            f"release reads up to {MAX_BODY:,} bytes), and {RemoteTooLargeError.FIX}",
            size,
        )
    if status == 408 or code == "deadline_exceeded":
        return RemoteDeadlineError(f"invocation {invocation}: {url}: {message}")
    if 300 <= status < 400:  # a mount's trailing slash, http to https: not followed
        location = resp.headers.get("location", "")
        message = (
            f"it redirected it to {location!r}: register the remote workflow with that url= "
            "(a signed invocation is sent only where it is registered to go)"
        )
        return RemoteRefusedError(url, status, "redirected", message, {"location": location})
    if (status, code) not in _TENANT_REFUSALS:
        message += " (not a tether tenant's answer: is tether.remote.handler served at this url?)"
    fix = _fix(code, error.get("details"), inv, message)
    if fix is not None:
        message += f"; {fix}"
    kind = RemoteVersionError if code in _VERSION_CODES else RemoteRefusedError
    return kind(url, status, code, message, error.get("details"))


def _fix(code: str, details: Any, inv: Invocation, said: str) -> str | None:
    """How to mend a refusal that the orchestrator's own registration causes: the
    tenant says what it refused (`said`: "the signature does not match the body"), and
    the run failed with that alone, though the fix is in ``app.remote_workflow``."""
    details = details if isinstance(details, dict) else {}
    if code == "bad_signature":
        return (
            "the secret= given to app.remote_workflow is not one the tenant accepts: give "
            "it the tenant's TenantApp(secret=...)"
        )
    if code == "protocol_version_mismatch":
        return _protocol_fix(listed(details, "supported"), inv.protocol)
    if code == "stale_timestamp":
        return "this machine's clock and the tenant's differ: synchronise them (NTP)"
    if code == "workflow_not_found":
        served = ", ".join(repr(w) for w in listed(details, "workflows")) or "none"
        return (
            f"the tenant serves {served}: register {inv.workflow!r} there with "
            "@tenant.workflow, or name one it serves in app.remote_workflow"
        )
    if code == "workflow_version_mismatch":
        return _version_fix(listed(details, "versions"), inv, said)
    return None


def _protocol_fix(spoken: list[Any], ours: int) -> str:
    """How to mend a protocol the tenant does not speak. The run's recorded error said
    only "protocol version 1 is not spoken here": the versions it does speak were on
    the exception object alone (`RemoteVersionError.supported`), never recorded."""
    said = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in spoken)
    text = f"the tenant speaks protocol versions {said or 'none it names'}"
    text += f" and this orchestrator {ours}"
    numbers = [v for v in spoken if isinstance(v, int) and not isinstance(v, bool)]
    if numbers and len(numbers) == len(spoken) and min(numbers) > ours:
        return f"{text}: upgrade tether here to a release that speaks one of them"
    if numbers and len(numbers) == len(spoken) and max(numbers) < ours:
        return f"{text}: upgrade tether on the tenant to a release that speaks {ours}"
    return f"{text}: run releases of tether on both sides that share a protocol version"


def _version_fix(served: list[Any], inv: Invocation, said: str) -> str:
    """How to mend a version the tenant does not serve. A workflow registered without
    version= on one side only was told to list None in compatible= (which takes only
    strings). A run invoked before is told to have the tenant serve its version: each
    invocation sends the run's recorded one, so the advice it got (a version= here)
    could not save it."""
    versions, version = versions_text(served), inv.version
    # the tenant's own message names them ("served at versions '2', not '1'"): once
    named = versions and f"versions {versions}" in said
    serves = "" if named else f"it serves versions {versions or 'none'}; "
    going = inv.invocation > 1 or inv.mode == "compensate"
    rerun = ", then rerun this run (app.rerun_from)" if inv.mode == "run" else ""
    if version is None and going:
        return (
            f"{serves}this run has no version, which each of its invocations sends: only a "
            "tenant workflow registered without version= resumes it (its compatible= may "
            f"list the versions served now){rerun}"
        )
    if version is None:
        return (
            f"{serves}this run has no version (app.remote_workflow was given no version=): "
            "register the workflow here with app.remote_workflow(..., version=) naming one "
            "the tenant serves"
        )
    if served == [None]:
        here = "" if going else "drop version= from app.remote_workflow here, or "
        return (
            f"the tenant registered the workflow without a version: {here}give it "
            f"@tenant.workflow(version={version!r}){rerun if going else ''}"
        )
    if going:
        return (
            f"{serves}this run is at version {version!r}, which each of its invocations "
            "sends (a version= given here applies to new runs only): have the tenant serve "
            f"{version!r} too (@tenant.workflow(compatible=[{version!r}])){rerun}"
        )
    return (
        f"{serves}register the workflow here at a version the tenant serves "
        f"(app.remote_workflow(..., version=)), or have the tenant serve {version!r} too "
        f"(@tenant.workflow(compatible=[{version!r}]))"
    )
