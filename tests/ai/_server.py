"""A real local HTTP server that speaks OpenAI's and Anthropic's wire formats.

The official SDKs are pointed at it by `base_url`; no test reaches the
internet. It answers from a script (`queue_chat`, `queue_message`, `fail_next`,
for a POST or, with ``method="GET"``, a read such as a batch's status; with
``path``, only a request to that path, such as a batch's results) or with a
default echo, reports usage with cached and reasoning parts, keeps
files and batches in memory (they survive the workflow processes, which run
elsewhere; OpenAI's are listed newest first with their metadata), ends
batches as the providers do (`finish_batches`, `end_batches`, a cancel with
the requests it had completed; OpenAI refuses, 409, to cancel one that ended),
and counts every request it receives by path.
"""

from __future__ import annotations

import base64
import json
import re
import select
import socket
import struct
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | bytes = field(default_factory=dict)
    # "reset": headers promise the body, half of it is sent, the connection dropped;
    # "stall": nothing is answered until `release` is set (a client timeout);
    # "hold": answered as scripted once `held` is set (a slow refusal);
    # "drip": the answer it would give, half its body sent, the rest once `held` is set
    # (a slow answer, in flight until then; see `drip_next`)
    mode: str = ""
    method: str = "POST"  # the next request of this method fails
    path: str | None = None  # ... whose path this pattern is found in (`re.search`)


@dataclass
class State:
    chat: deque[dict[str, Any]] = field(default_factory=deque)  # scripted chat replies
    messages: deque[dict[str, Any]] = field(default_factory=deque)  # scripted Anthropic replies
    failures: deque[Failure] = field(default_factory=deque)
    counts: Counter[str] = field(default_factory=Counter)
    bodies: list[tuple[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # of the chat requests
    queries: list[dict[str, Any]] = field(default_factory=list)  # of the chat requests
    files: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    anthropic_batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq: int = 0
    # a batch cancelled: how many of its requests it had completed, and how many status
    # reads it stays "cancelling" ("canceling") before it ends with them
    cancel_completes: int = 0
    cancelling_reads: int = 0
    dripping: int = 0  # answers half sent now (`drip_next`)
    dropped: int = 0  # ... whose client closed the connection before the rest was sent


# a chat completion from a server that reports no usage (some OpenAI-compatible ones)
OPENAI_NO_USAGE: dict[str, object] = {
    "id": "chatcmpl_1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4.1-mini",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
}

# an Anthropic message from a proxy that reports no usage
ANTHROPIC_NO_USAGE: dict[str, object] = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
}


class ProviderServer:
    """Start with `ProviderServer()`; `openai_url` and `anthropic_url` for the SDKs."""

    def __init__(self) -> None:
        self.state = State()
        self.lock = threading.Lock()
        self.release = threading.Event()  # ends every stalled answer
        self.held = threading.Event()  # lets every held answer go
        handler = type("H", (_Handler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.release.set()
        self.held.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- scripting ------------------------------------------------------------------------

    def queue_chat(
        self,
        content: str,
        *,
        prompt_tokens: int = 100,
        cached_tokens: int = 0,
        completion_tokens: int = 20,
        reasoning_tokens: int = 0,
        tool_calls: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        """Script the next chat reply; `tool_calls` as (function name, arguments)."""
        self.state.chat.append(
            {
                "content": content,
                "tool_calls": tool_calls,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
                    "completion_tokens_details": {
                        "reasoning_tokens": reasoning_tokens,
                        "audio_tokens": 0,
                        "accepted_prediction_tokens": 0,
                        "rejected_prediction_tokens": 0,
                    },
                },
            }
        )

    def queue_message(
        self,
        text: str,
        *,
        input_tokens: int = 100,
        cache_read: int = 0,
        cache_write: int = 0,
        cache_write_1h: int = 0,
        web_searches: int = 0,
        output_tokens: int = 20,
        tool_input: dict[str, Any] | None = None,
        tool_uses: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        """Script the next message; `tool_input` answers a forced tool, `tool_uses` are
        tool calls the model makes of its own accord, as (name, input); `cache_write_1h`
        of the `cache_write` tokens are kept an hour; `web_searches` server-side searches."""
        self.state.messages.append(
            {
                "text": text,
                "tool_input": tool_input,
                "tool_uses": tool_uses,
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_read_input_tokens": cache_read,
                    "cache_creation_input_tokens": cache_write,
                    "cache_creation": {
                        "ephemeral_5m_input_tokens": cache_write - cache_write_1h,
                        "ephemeral_1h_input_tokens": cache_write_1h,
                    },
                    "output_tokens": output_tokens,
                    "server_tool_use": {"web_search_requests": web_searches},
                    "service_tier": "standard",
                },
            }
        )

    def fail_next(
        self,
        status: int,
        *,
        retry_after: str | None = None,
        method: str = "POST",
        path: str | None = None,
        hold: bool = False,
    ) -> None:
        """The next request of `method` (whose path `path`, a pattern, is found in)
        is answered `status`; with `hold`, only once `held` is set."""
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        body = {"error": {"message": f"scripted {status}", "type": "x"}}
        mode = "hold" if hold else ""
        self.state.failures.append(Failure(status, headers, body, mode, method, path))

    def answer_next(
        self, status: int, body: dict[str, Any] | bytes, mode: str = "", *, method: str = "POST"
    ) -> None:
        """The next POST (GET) is answered with `body` as it is (bytes: not even JSON),
        or, with `mode`, is cut off mid-body ("reset") or left unanswered ("stall")."""
        self.state.failures.append(Failure(status, {}, body, mode, method))

    def drip_next(self, path: str | None = None) -> None:
        """The next POST (whose path `path` is found in) is answered as it would be, but
        only half its body is sent until `held` is set: the call is in flight meanwhile.
        A client that gives up closes the connection: counted in `state.dropped`."""
        self.state.failures.append(Failure(200, mode="drip", path=path))

    def count(self, path_prefix: str) -> int:
        return sum(n for p, n in self.state.counts.items() if p.startswith(path_prefix))

    def finish_batches(self) -> None:
        """Every submitted batch completes now (results computed at submit time)."""
        with self.lock:
            for batch in self.state.batches.values():
                if batch["status"] == "in_progress":
                    batch["status"] = "completed"
                    batch["output_file_id"] = batch["_output"]
                    total = batch["request_counts"]["total"]
                    batch["request_counts"] = {"total": total, "completed": total, "failed": 0}
            for batch in self.state.anthropic_batches.values():
                if batch["processing_status"] == "in_progress":
                    _end_anthropic(self, batch, "succeeded", len(batch["_results"]))

    def end_batches(self, status: str, *, completed: int) -> None:
        """Every running batch ends `status` ("expired", "cancelled" or "failed") with
        its first `completed` requests done, as the providers end one: OpenAI's output
        file holds those, its error file the rest; Anthropic's results list both."""
        with self.lock:
            for batch in self.state.batches.values():
                if batch["status"] in ("in_progress", "cancelling"):
                    _end_openai(self, batch, status, completed)
            for batch in self.state.anthropic_batches.values():
                if batch["processing_status"] in ("in_progress", "canceling"):
                    kind = "canceled" if status == "cancelled" else status
                    _end_anthropic(self, batch, kind, completed)

    def fail_validation(self, code: str, message: str) -> None:
        """Every OpenAI batch still running fails, as one whose input file OpenAI
        refused at validation: status ``failed``, no output nor error file, the
        reasons in its ``errors`` (none of its requests ran, none billed)."""
        with self.lock:
            for batch in self.state.batches.values():
                if batch["status"] == "in_progress":
                    error = {"code": code, "message": message, "param": None, "line": 1}
                    batch.update(status="failed", errors={"object": "list", "data": [error]})

    def finish_batches_refusing(self, refused: set[str]) -> None:
        """Every submitted batch completes now, the requests whose custom_id is in
        `refused` answered with a 400 each (not billed), the others as usual: OpenAI
        writes those in the error file, Anthropic lists them as ``errored``."""
        error = {"type": "invalid_request_error", "message": "max_tokens: too large"}
        with self.lock:
            for batch in self.state.batches.values():
                if batch["status"] == "in_progress":
                    done = [x for x in batch["_lines"] if x["custom_id"] not in refused]
                    bad = [_refused_line(self, x, error) for x in batch["_lines"]
                           if x["custom_id"] in refused]  # fmt: skip
                    batch.update(
                        status="completed",
                        output_file_id=_jsonl_file(self, done) if done else None,
                        error_file_id=_jsonl_file(self, bad) if bad else None,
                        request_counts={"total": len(batch["_lines"]),
                                        "completed": len(done), "failed": len(bad)},
                    )  # fmt: skip
            for batch in self.state.anthropic_batches.values():
                if batch["processing_status"] == "in_progress":
                    for entry in batch["_results"]:
                        if entry["custom_id"] in refused:
                            entry["result"] = {"type": "errored",
                                               "error": {"type": "error", "error": error}}  # fmt: skip
                    _end_anthropic(self, batch, "succeeded", len(batch["_results"]))
                    batch["request_counts"].update(
                        succeeded=len(batch["_results"]) - len(refused), errored=len(refused)
                    )

    def edit_results(self, edit: Any) -> None:
        """Every ended batch's results become `edit(lines)` (a list of result lines, as
        OpenAI's output file or Anthropic's results list them): a line left out, one
        repeated, as a provider's results file may have them; a str is a line as it is
        (not JSON, say)."""
        with self.lock:
            for batch in self.state.batches.values():
                if batch.get("output_file_id"):
                    file_id = batch["output_file_id"]
                    lines = [json.loads(x) for x in self.state.files[file_id].splitlines() if x]
                    new = "".join(_line(x) + "\n" for x in edit(lines))
                    self.state.files[file_id] = new.encode()
            for batch in self.state.anthropic_batches.values():
                if batch["processing_status"] == "ended":
                    batch["_results"] = edit(batch["_results"])

    # -- answers --------------------------------------------------------------------------

    def next_id(self, prefix: str) -> str:
        self.state.seq += 1
        return f"{prefix}_{self.state.seq:04d}"

    def chat_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.state.chat:
            scripted = self.state.chat.popleft()
        else:
            last = body["messages"][-1]["content"]
            scripted = {
                "content": f"echo: {last}",
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            }
        return {
            "id": self.next_id("chatcmpl"),
            "object": "chat.completion",
            "created": 1764600000,
            "model": body["model"],
            "service_tier": "default",
            "choices": [
                {
                    "index": 0,
                    "message": _chat_message(self, scripted),
                    "finish_reason": "tool_calls" if scripted.get("tool_calls") else "stop",
                    "logprobs": None,
                }
            ],
            "usage": scripted["usage"],
        }

    def anthropic_message(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.state.messages:
            scripted = self.state.messages.popleft()
        else:
            scripted = {
                "text": "echo",
                "tool_input": None,
                "usage": {"input_tokens": 10, "output_tokens": 5},
            }
        content: list[dict[str, Any]]
        forced = (body.get("tool_choice") or {}).get("name")
        if forced and scripted.get("tool_input") is not None:
            content = [
                {
                    "type": "tool_use",
                    "id": self.next_id("toolu"),
                    "name": forced,
                    "input": scripted["tool_input"],
                }
            ]
        else:
            content = [{"type": "text", "text": scripted["text"]}] if scripted["text"] else []
            content += [
                {"type": "tool_use", "id": self.next_id("toolu"), "name": name, "input": args}
                for name, args in scripted.get("tool_uses") or []
            ]
        return {
            "id": self.next_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": "tool_use" if scripted.get("tool_uses") else "end_turn",
            "stop_sequence": None,
            "usage": scripted["usage"],
        }


def _chat_message(srv: ProviderServer, scripted: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": scripted["content"]}
    if scripted.get("tool_calls"):
        message["tool_calls"] = [
            {
                "id": srv.next_id("call"),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for name, args in scripted["tool_calls"]
        ]
    return message


class _Handler(BaseHTTPRequestHandler):
    server_state: ProviderServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def log_message(self, *args: Any) -> None:
        return None

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", f"req_{self.server_state.state.seq:04d}")
        self.send_header("request-id", f"req_{self.server_state.state.seq:04d}")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _fail(self, fail: Failure) -> None:
        if fail.mode == "hold":
            self.server_state.held.wait(30)
        if fail.mode == "stall":
            self.server_state.release.wait(30)
            self.close_connection = True
            return
        if fail.mode == "reset":
            self._half(fail.status, fail.body)
            self.close_connection = True
            return
        self._send(fail.status, fail.body, fail.headers)

    def _half(self, status: int, body: Any) -> bytes:
        """Headers that promise `body` (as JSON), and the first half of it; the whole."""
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        return data

    def _read(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self) -> None:
        self._route("GET", b"")

    def do_POST(self) -> None:
        self._route("POST", self._read())

    def _route(self, method: str, raw: bytes) -> None:
        srv = self.server_state
        path, _, query = self.path.partition("?")
        with srv.lock:
            srv.state.counts[f"{method} {path}"] += 1
            fail = next((f for f in srv.state.failures if _fails(f, method, path)), None)
            if fail is not None:
                srv.state.failures.remove(fail)
            if fail is None:
                try:
                    status, body = _dispatch(srv, method, path, raw, self.headers, parse_qs(query))
                except KeyError as exc:
                    status, body = 404, {"error": {"message": f"not found: {exc}", "type": "x"}}
        if fail is not None and fail.mode == "drip":
            with srv.lock:
                status, body = _dispatch(srv, method, path, raw, self.headers, parse_qs(query))
            self._drip(status, body)
            return
        if fail is not None:  # outside the lock: a stalled answer holds up no other
            self._fail(fail)
            return
        self._send(status, body)

    def _drip(self, status: int, body: Any) -> None:
        """Half of the answer, the rest once `held` is set, unless the client closes
        the connection before (a peek that reads its end): then it is counted dropped."""
        srv = self.server_state
        data = self._half(status, body)
        with srv.lock:
            srv.state.dripping += 1
        try:
            while not srv.held.is_set():
                readable, _, _ = select.select([self.connection], [], [], 0.02)
                if readable and self._closed():
                    with srv.lock:
                        srv.state.dropped += 1
                    self.close_connection = True
                    return
            self.wfile.write(data[len(data) // 2 :])
        finally:
            with srv.lock:
                srv.state.dripping -= 1

    def _closed(self) -> bool:
        """Whether the client closed the connection (or reset it): its end is read."""
        try:
            return not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True


def _fails(fail: Failure, method: str, path: str) -> bool:
    return fail.method == method and (fail.path is None or re.search(fail.path, path) is not None)


def _refusal(message: str, param: str, code: str) -> dict[str, Any]:
    """A 400's body as OpenAI words one."""
    return {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}  # fmt: skip


# the names OpenAI takes for a response_format's schema
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_BAD_SCHEMA_NAME = _refusal(
    "Invalid 'response_format.json_schema.name': string does not match pattern. "
    "Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.",
    "response_format.json_schema.name",
    "invalid_value",
)

# OpenAI's reasoning models refuse `max_tokens` with this answer
_REASONING = re.compile(r"o\d|gpt-5")
_NO_MAX_TOKENS = _refusal(
    "Unsupported parameter: 'max_tokens' is not supported with this model. "
    "Use 'max_completion_tokens' instead.",
    "max_tokens",
    "unsupported_parameter",
)


def _encoded(vector: list[float], body: dict[str, Any]) -> Any:
    """A vector as OpenAI sends it: base64 of little-endian float32s if asked for."""
    if body.get("encoding_format") != "base64":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _dispatch(
    srv: ProviderServer, method: str, path: str, raw: bytes, headers: Any, query: dict[str, Any]
) -> tuple[int, Any]:
    st = srv.state
    if path == "/v1/chat/completions":
        body = json.loads(raw)
        st.bodies.append((path, body))
        st.headers.append({k.lower(): v for k, v in headers.items()})
        st.queries.append(query)
        if "max_tokens" in body and _REASONING.match(body["model"]):  # as OpenAI refuses it
            return 400, _NO_MAX_TOKENS
        name = ((body.get("response_format") or {}).get("json_schema") or {}).get("name")
        if name is not None and not _NAME.fullmatch(name):  # as OpenAI refuses it
            return 400, _BAD_SCHEMA_NAME
        return 200, srv.chat_completion(body)
    if path == "/v1/embeddings":
        body = json.loads(raw)
        st.bodies.append((path, body))
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = [[float(len(t)), 0.5, -0.5] for t in inputs]
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(v, body)}
            for i, v in enumerate(vectors)
        ]
        tokens = sum(len(t.split()) for t in inputs)
        return 200, {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    if path == "/v1/files" and method == "POST":
        content = _multipart_file(raw, headers.get("content-type", ""))
        file_id = srv.next_id("file")
        st.files[file_id] = content
        return 200, _file(file_id, len(content), "batch")
    m = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
    if m:
        return 200, st.files[m.group(1)]
    if path == "/v1/batches" and method == "POST":
        return 200, _openai_batch_create(srv, json.loads(raw))
    if path == "/v1/batches":
        return 200, _openai_batch_list(srv, query)
    m = re.fullmatch(r"/v1/batches/([\w-]+)(/cancel)?", path)
    if m:
        batch = st.batches[m.group(1)]
        if m.group(2) and batch["status"] in _OPENAI_ENDED:  # as OpenAI refuses it
            message = f"Cannot cancel a batch with status '{batch['status']}'."
            return 409, {"error": {"message": message, "type": "invalid_request_error"}}
        if m.group(2):
            batch.update(status="cancelling", _reads=st.cancelling_reads)
        if batch["status"] == "cancelling":
            batch["_reads"] -= 1
            if batch["_reads"] < 0:
                _end_openai(srv, batch, "cancelled", st.cancel_completes)
        return 200, {k: v for k, v in batch.items() if not k.startswith("_")}
    if path == "/v1/messages":
        body = json.loads(raw)
        st.bodies.append((path, body))
        refused = _anthropic_refuses(body)
        if refused:
            return 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": refused}}  # fmt: skip
        return 200, srv.anthropic_message(body)
    if path == "/v1/messages/batches" and method == "POST":
        return 200, _anthropic_batch_create(srv, json.loads(raw))
    m = re.fullmatch(r"/v1/messages/batches/([\w-]+)(/results|/cancel)?", path)
    if m:
        batch = st.anthropic_batches[m.group(1)]
        if m.group(2) == "/results":
            lines = "\n".join(_line(r) for r in batch["_results"]) + "\n"
            return 200, lines.encode()
        if m.group(2) == "/cancel":
            batch.update(processing_status="canceling", _reads=st.cancelling_reads)
        if batch["processing_status"] == "canceling":
            batch["_reads"] -= 1
            if batch["_reads"] < 0:
                _end_anthropic(srv, batch, "canceled", st.cancel_completes)
        return 200, {k: v for k, v in batch.items() if not k.startswith("_")}
    raise KeyError(path)


def _anthropic_refuses(body: dict[str, Any]) -> str | None:
    """What Anthropic says of messages it refuses: a role other than user and
    assistant, a field of OpenAI's (`tool_calls`, `tool_call_id`), an empty content
    (but for a last assistant message, a prefill), a tool name outside its pattern."""
    for i, tool in enumerate(body.get("tools") or []):
        name = tool.get("name")
        if isinstance(name, str) and not re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", name):
            return f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
    messages = body.get("messages") or []
    for i, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        last = i == len(messages) - 1 and message.get("role") == "assistant"
        if message.get("content") in ("", []) and not last:
            return (
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        extra = sorted(set(message) - {"role", "content"})
        if extra:
            return f"messages.{i}.{extra[0]}: Extra inputs are not permitted"
    return None


# a batch in one of these has ended: OpenAI answers its cancel 409 Conflict, "Cannot
# cancel a batch with status 'completed'." (the error openai.ConflictError carries)
_OPENAI_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


def _file(file_id: str, size: int, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": 1764600000,
        "filename": "batch.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def _openai_batch_create(srv: ProviderServer, body: dict[str, Any]) -> dict[str, Any]:
    st = srv.state
    lines = [json.loads(x) for x in st.files[body["input_file_id"]].decode().splitlines() if x]
    out = []
    for line in lines:
        reply = srv.chat_completion(line["body"])
        out.append(
            {
                "id": srv.next_id("batch_req"),
                "custom_id": line["custom_id"],
                "response": {"status_code": 200, "request_id": srv.next_id("req"), "body": reply},
                "error": None,
            }
        )
    out_id = _jsonl_file(srv, list(reversed(out)))  # providers answer in any order
    batch_id = srv.next_id("batch")
    st.batches[batch_id] = {
        "id": batch_id,
        "object": "batch",
        "endpoint": body["endpoint"],
        "input_file_id": body["input_file_id"],
        "completion_window": body["completion_window"],
        "status": "in_progress",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": 1764600000 + st.seq,
        "metadata": body.get("metadata"),
        "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
        "_output": out_id,
        "_lines": out,
    }
    return {k: v for k, v in st.batches[batch_id].items() if not k.startswith("_")}


def _openai_batch_list(srv: ProviderServer, query: dict[str, Any]) -> dict[str, Any]:
    """A page of the batches, newest first, after the cursor `after` (a batch id)."""
    rows = [
        {k: v for k, v in b.items() if not k.startswith("_")}
        for b in reversed(srv.state.batches.values())
    ]
    if "after" in query:
        ids = [r["id"] for r in rows]
        rows = rows[ids.index(query["after"][0]) + 1 :]
    limit = int(query.get("limit", ["20"])[0])
    page = rows[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(rows) > limit,
    }


def _line(entry: Any) -> str:
    """A results file's line: a result as JSON, a str as it is (`edit_results`)."""
    return entry if isinstance(entry, str) else json.dumps(entry)


def _jsonl_file(srv: ProviderServer, lines: list[dict[str, Any]]) -> str:
    file_id = srv.next_id("file")
    srv.state.files[file_id] = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
    return file_id


def _end_openai(srv: ProviderServer, batch: dict[str, Any], status: str, completed: int) -> None:
    """`batch` ends `status`, its first `completed` requests in its output file and the
    others, as OpenAI reports requests a batch did not run, in its error file."""
    done, rest = batch["_lines"][:completed], batch["_lines"][completed:]
    errors = [
        {
            "id": line["id"],
            "custom_id": line["custom_id"],
            "response": None,
            "error": {"code": f"batch_{status}", "message": f"This request was {status}."},
        }
        for line in rest
    ]
    batch.update(
        status=status,
        output_file_id=_jsonl_file(srv, done) if done else None,
        error_file_id=_jsonl_file(srv, errors) if errors else None,
        request_counts={"total": len(batch["_lines"]), "completed": len(done), "failed": 0},
    )


def _refused_line(srv: ProviderServer, line: dict[str, Any], error: Any) -> dict[str, Any]:
    """A request of an OpenAI batch answered 400, as its error file has it."""
    response = {"status_code": 400, "request_id": srv.next_id("req"), "body": {"error": error}}
    return {"id": line["id"], "custom_id": line["custom_id"], "response": response,
            "error": None}  # fmt: skip


def _end_anthropic(srv: ProviderServer, batch: dict[str, Any], kind: str, completed: int) -> None:
    """`batch` ends, its first `completed` requests succeeded and the others of `kind`
    ("expired", "canceled"), as its results and request counts list them."""
    results = batch["_results"]
    for entry in results[completed:]:
        entry["result"] = {"type": kind}
    counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
    counts["succeeded"] = min(completed, len(results))
    if kind != "succeeded":
        counts[kind] = len(results) - counts["succeeded"]
    batch.update(
        processing_status="ended",
        request_counts=counts,
        ended_at="2026-12-01T01:00:00Z",
        results_url=f"{srv.anthropic_url}/v1/messages/batches/{batch['id']}/results",
    )


def _anthropic_batch_create(srv: ProviderServer, body: dict[str, Any]) -> dict[str, Any]:
    st = srv.state
    results = []
    for req in body["requests"]:
        msg = srv.anthropic_message(req["params"])
        msg["usage"] = {**msg["usage"], "service_tier": "batch"}
        results.append(
            {"custom_id": req["custom_id"], "result": {"type": "succeeded", "message": msg}}
        )
    batch_id = srv.next_id("msgbatch")
    st.anthropic_batches[batch_id] = {
        "id": batch_id,
        "type": "message_batch",
        "processing_status": "in_progress",
        "request_counts": {
            "processing": len(results),
            "succeeded": 0,
            "errored": 0,
            "canceled": 0,
            "expired": 0,
        },
        "created_at": "2026-12-01T00:00:00Z",
        "expires_at": "2026-12-02T00:00:00Z",
        "ended_at": None,
        "archived_at": None,
        "cancel_initiated_at": None,
        "results_url": None,
        "_results": results,
    }
    return {k: v for k, v in st.anthropic_batches[batch_id].items() if not k.startswith("_")}


def _multipart_file(raw: bytes, content_type: str) -> bytes:
    boundary = content_type.split("boundary=")[-1].strip('"').encode()
    for part in raw.split(b"--" + boundary):
        if b'name="file"' in part:
            return part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
    raise KeyError("file part")
