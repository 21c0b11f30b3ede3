"""The clients' I/O-free half: each API call as a request to send and a function to
read its answer, the error answer turned into `ApiError`, and the Server-Sent
Events parser. `Client` and `AsyncClient` add only the sending."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from ..record import RunRecord
from ..serde import to_json_data
from ..stages import Stage
from ..store import RunStatus
from ._errors import ApiError
from ._models import (
    AICall,
    ApiTokenCreated,
    ApiTokenInfo,
    CompensationsRetrying,
    Event,
    EventList,
    EventSent,
    QueueInfo,
    RerunStarted,
    RunCancelled,
    RunPage,
    RunStarted,
    Scope,
    Signalled,
    TokenCompleted,
    UsageRow,
    WaitSummary,
    WorkerInfo,
)

__all__ = ["UNSET", "Call", "Calls", "SSEParser", "error_of", "not_tether", "path_segment"]

T = TypeVar("T")
_TAGS = re.compile(r"<[^>]*>")  # of an HTML error page, to quote its words
M = TypeVar("M", bound=BaseModel)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # an argument not given (None is a value: a JSON null input)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, and how to read a successful answer's JSON."""

    method: str
    path: str
    read: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _model(kind: type[M]) -> Callable[[Any], M]:
    return kind.model_validate


def _models(kind: type[M]) -> Callable[[Any], list[M]]:
    adapter = TypeAdapter(list[kind])  # type: ignore[valid-type]
    return adapter.validate_python


def _params(**given: Any) -> dict[str, Any]:
    """Query parameters: None left out, times as ISO 8601, enums by value."""
    out: dict[str, Any] = {}
    for k, v in given.items():
        if v is None:
            continue
        if isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, RunStatus):
            v = v.value
        elif isinstance(v, bool):
            v = "true" if v else "false"
        out[k] = v
    return out


def _idem(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Idempotency-Key": key}


def error_of(
    status: int, text: str, content_type: str | None = None, at: str | None = None
) -> ApiError:
    """The `ApiError` for an error answer: tether's JSON error, or `_foreign_error`.
    `at` is the request answered (``GET http://host:8000/api/v1/runs``): a failure of
    the server (5xx) and an answer not tether's name it, so a user with several
    servers knows whose log to read, or which address is wrong."""
    try:
        err = json.loads(text)["error"]
        message = str(err["message"])
        if at is not None and status >= 500:
            message = f"{message} (answering {at})"
        return ApiError(status, str(err["code"]), message, err.get("details"))
    except (ValueError, KeyError, TypeError):
        return _foreign_error(status, text, content_type, at)


def _foreign_error(status: int, text: str, content_type: str | None, at: str | None) -> ApiError:
    """An error answer that is not tether's (a proxy's 502/503 page, another program):
    its raw text was the whole message (``<html><head><title>503 ...``), which said
    neither who answered nor whether to try again, and then nor where it was sent."""
    try:
        reason = f" {HTTPStatus(status).phrase}"
    except ValueError:
        reason = ""
    sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    start = " ".join(_TAGS.sub(" ", text).split())[:80]
    then = (
        "the server (or a proxy in front of it) is down, starting or overloaded: retry later"
        if status >= 500
        else "check the URL is the one `tether serve` prints (e.g. http://127.0.0.1:8000)"
    )
    return ApiError(
        status,
        "http_error",
        f"HTTP {status}{reason}, not an error of tether's API ({sent}: {start!r})"
        f"{'' if at is None else ' answering ' + at}; {then}",
    )


def not_tether(base_url: str, status: int, content_type: str | None, text: str) -> ApiError:
    """The `ApiError` for a successful answer that is not the API's: another program
    answers at `base_url` (a web page, another service), or a prefix such as
    ``/api/v1`` was given in it. Reading such an answer raised a bare JSON decode or
    validation error, and an event stream read a web page as no events at all."""
    sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    start = " ".join(text[:80].split())
    return ApiError(
        status,
        "not_tether",
        f"the server at {base_url} answered with something that is not tether's API "
        f"({sent}: {start!r}); give the address `tether serve` prints, without /api/v1 "
        "(e.g. http://127.0.0.1:8000)",
    )


class Calls:
    """Every call of the API as a `Call` value (no I/O), under the names, arguments
    and docs of the clients' methods: `Client` and `AsyncClient` send what these
    build (see `_client._Sent`), so each call's signature is written here once."""

    def list_runs(
        self,
        *,
        status: RunStatus | str | None = None,
        workflow: str | None = None,
        tag: str | None = None,
        tenant: str | None = None,
        parent: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
        fields: Literal["summary", "full"] | None = None,
    ) -> Call[RunPage]:
        """One page of runs, newest first. Filters: `status`, `workflow`, `tag`,
        `tenant`, `parent` (the run that started them), `created_after`,
        `created_before`; `limit` (1-500), `cursor`. ``fields="full"``: each run with
        its input, output, state, owner and owner_expires_at too (not sent unless
        given: a server older than this argument refuses it)."""
        return Call("GET", "/api/v1/runs", _model(RunPage), _params(**_args(locals())))

    def get_record(self, workflow_id: str) -> Call[RunRecord]:
        """The run with its steps, events, waits, heartbeats, leases and AI usage, as
        `App.get_record` reads it (`ApiError` 404 ``run_not_found`` if there is none)."""
        return Call("GET", f"/api/v1/runs/{path_segment(workflow_id)}", RunRecord.from_dict)

    def events(self, workflow_id: str, *, after: int = 0) -> Call[list[Event]]:
        """The run's events numbered above `after`, oldest first: pass the last `seq`
        seen to read on from there (`stream_events` waits for new ones)."""

        def read(data: Any) -> list[Event]:
            return EventList.model_validate(data).events

        path = f"/api/v1/runs/{path_segment(workflow_id)}/events"
        return Call("GET", path, read, _params(after=after))

    def stream(self, workflow_id: str, after: int = 0) -> Call[None]:
        """The request `stream_events` opens (Server-Sent Events, read by the client)."""
        path = f"/api/v1/runs/{path_segment(workflow_id)}/events/stream"
        return Call("GET", path, lambda _: None, _params(after=after))

    def waits(self, workflow_id: str) -> Call[list[WaitSummary]]:
        """What the run waits for (signals, events, timers, tokens), pending and resolved."""
        return Call("GET", f"/api/v1/runs/{path_segment(workflow_id)}/waits", _models(WaitSummary))

    def start(
        self,
        workflow: str,
        input: Any = UNSET,
        *,
        idempotency_key: str | None = None,
        workflow_id: str | None = None,
        queue: str | None = None,
        tags: list[str] | None = None,
        tenant: str | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
        max_attempts: int | None = None,
        run_after: datetime | None = None,
        initial_state: Any = None,
    ) -> Call[str]:
        """Start a run of `workflow` on the server (with `queue`: queue it for
        workers); its id. Options as `App.start` / `App.submit`: `concurrency_key`,
        `max_attempts` and `run_after` are a queued run's, refused (422) without
        `queue`."""
        options = _args(locals(), "workflow", "input", "idempotency_key")
        body: dict[str, Any] = {"workflow": workflow}
        if input is not UNSET:
            body["input"] = to_json_data(input, what="input")
        body |= {k: _jsonable(v) for k, v in options.items() if v is not None}
        if initial_state is not None:
            body["initial_state"] = to_json_data(initial_state, what="initial_state")
        return self._post(
            "/api/v1/runs",
            lambda d: RunStarted.model_validate(d).workflow_id,
            body,
            idempotency_key,
        )

    def _post(
        self, path: str, read: Callable[[Any], T], body: dict[str, Any], key: str | None
    ) -> Call[T]:
        return Call("POST", path, read, body=body, headers=_idem(key))

    def cancel(
        self,
        workflow_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        abandon_batches: bool = False,
        idempotency_key: str | None = None,
    ) -> Call[list[str]]:
        """As `App.cancel`: the ids cancelled (the run, its pending waits and the
        children it waits on). `compensate` runs its compensations; `abandon_batches`
        cancels a run whose provider batches the server cannot reach (they run on,
        billed)."""
        body = {"reason": reason, "compensate": compensate, "abandon_batches": abandon_batches}
        return self._post(
            f"/api/v1/runs/{path_segment(workflow_id)}/cancel",
            lambda d: RunCancelled.model_validate(d).cancelled,
            body,
            idempotency_key,
        )

    def signal(
        self,
        workflow_id: str,
        name: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Call[bool]:
        """As `App.signal`: True if a wait of the run took it; False if none matched
        yet and the signal is kept for the run's next wait of that name."""
        return self._post(
            f"/api/v1/runs/{path_segment(workflow_id)}/signal",
            lambda d: Signalled.model_validate(d).woken,
            {"name": name, "payload": to_json_data(payload, what=f"signal {name!r} payload")},
            idempotency_key,
        )

    def send_event(
        self, event_type: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> Call[list[str]]:
        """As `App.send_event`: the ids of the runs whose waits for `event_type` it woke."""
        return self._post(
            "/api/v1/events",
            lambda d: EventSent.model_validate(d).woken,
            {"type": event_type, "payload": to_json_data(payload, what="event payload")},
            idempotency_key,
        )

    def complete_token(
        self, token_id: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> Call[str]:
        """As `App.complete_token`: complete a wait token (say, from a webhook) with
        `payload`; the id of the run it wakes."""
        return self._post(
            f"/api/v1/wait-tokens/{path_segment(token_id)}/complete",
            lambda d: TokenCompleted.model_validate(d).workflow_id,
            {"payload": to_json_data(payload, what="token payload")},
            idempotency_key,
        )

    def rerun_from(
        self,
        workflow_id: str,
        step: str | Stage[Any, Any, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Call[list[str]]:
        """As `App.rerun_from`: `step` a step's (or wait's) key, or a pipeline's stage by
        its id or as itself (sent as a Stage, it failed to be written as JSON)."""
        return self._post(
            f"/api/v1/runs/{path_segment(workflow_id)}/rerun",
            lambda d: RerunStarted.model_validate(d).woken,
            {"step": step.id if isinstance(step, Stage) else step},
            idempotency_key,
        )

    def retry_compensations(
        self, workflow_id: str, *, idempotency_key: str | None = None
    ) -> Call[list[str]]:
        """As `App.retry_compensations`, answered at once: the keys of the compensations
        that run again (the run goes on in the server, or on a worker of its queue)."""
        return self._post(
            f"/api/v1/runs/{path_segment(workflow_id)}/retry-compensations",
            lambda d: CompensationsRetrying.model_validate(d).retried,
            {},
            idempotency_key,
        )

    # -- usage, queues, workers, tokens ----------------------------------------------

    def usage(self, /, **filters: Any) -> Call[list[UsageRow]]:
        """As `App.usage`: `workflow`, `tag`, `since`, `until`, `group_by`, `run`, `children`
        (another name is refused: `ApiError` 400 ``unknown_parameter``)."""
        return Call("GET", "/api/v1/usage", _models(UsageRow), _params(**filters))

    def ai_calls(self, workflow_id: str, *, children: bool = False) -> Call[list[AICall]]:
        """The run's recorded model calls (`children`: its child runs' too), oldest
        first, with tokens, cost and latency; prompts and responses stay off the wire."""
        path = f"/api/v1/runs/{path_segment(workflow_id)}/ai-calls"
        return Call("GET", path, _models(AICall), _params(children=children))

    def queues(self) -> Call[list[QueueInfo]]:
        """Each queue's jobs by status (queued, claimed, done, failed) and its limits."""
        return Call("GET", "/api/v1/queues", _models(QueueInfo))

    def workers(self) -> Call[list[WorkerInfo]]:
        """The live processes that drive runs: their workflows, queues, and until when
        their claim holds."""
        return Call("GET", "/api/v1/workers", _models(WorkerInfo))

    def list_api_tokens(self) -> Call[list[ApiTokenInfo]]:
        """The API tokens, never their secrets (admin scope)."""
        return Call("GET", "/api/v1/api-tokens", _models(ApiTokenInfo))

    def create_api_token(self, scope: Scope, name: str | None = None) -> Call[ApiTokenCreated]:
        """A new token of `scope` (read, write or admin); its secret is in the answer
        only, once: the server keeps a hash (admin scope)."""
        body = {"scope": scope, "name": name}
        return Call("POST", "/api/v1/api-tokens", _model(ApiTokenCreated), body=body)

    def revoke_api_token(self, token_id: str) -> Call[list[ApiTokenInfo]]:
        """Revoke a token by its id (admin scope); the token as it now stands
        (`ApiError` 404 ``api_token_not_found`` if no live token has it)."""
        return Call("DELETE", f"/api/v1/api-tokens/{path_segment(token_id)}", _models(ApiTokenInfo))

    def openapi(self) -> Call[dict[str, Any]]:
        """The server's OpenAPI document, for other languages' clients."""
        return Call("GET", "/api/v1/openapi.json", dict)


def _args(given: dict[str, Any], *leave_out: str) -> dict[str, Any]:
    """A method's arguments by name, from its `locals()`: `self` and `leave_out` left out."""
    return {k: v for k, v in given.items() if k not in ("self", *leave_out)}


def path_segment(value: str) -> str:
    """One path segment: a run id with '/' or '?' in it stays one segment, and an id
    of dots (``..``) is not taken for a step up the path."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):  # tags as `App.start` takes them
        return list(value)
    return value


class SSEParser:
    """Server-Sent Events, line by line: `feed` a line, get the events it completes.
    The stream's ``end`` event is `done`, not an event: the frame ``event: end`` with
    no ``id``. A run's own event of type ``end`` (``wf.append_event("end")``) comes
    with its seq as its id, and is an event: taken for the end, it ended the stream
    while the run went on, its later events never read. Nothing is read after the
    end."""

    def __init__(self) -> None:
        self._event = ""
        self._id: str | None = None
        self._data: list[str] = []
        self.done = False

    def feed(self, lines: Iterable[str]) -> Iterator[Event]:
        for line in lines:
            if self.done:
                return
            if line == "":
                if self._data and self._event == "end" and self._id is None:
                    self.done = True
                elif self._data:
                    yield Event.model_validate_json("\n".join(self._data))
                self._event, self._id, self._data = "", None, []
            elif line.startswith(":"):
                continue  # a keep-alive comment
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    self._event = value
                elif name == "id":
                    self._id = value
                elif name == "data":
                    self._data.append(value)
