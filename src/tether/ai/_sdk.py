"""What the official SDK adapters share: keys, one client per event loop, errors.

The SDKs' own retries are switched off (`max_retries=0`): the durable step
retries instead, counting attempts in the database.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import importlib
import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

from ..errors import InvalidArgumentError
from ._errors import MissingAPIKeyError, ProviderError
from ._port import UNREADABLE_LINE
from ._types import BatchItemResult, ModelReply, Usage

__all__ = [
    "ClientPerLoop",
    "SDKProvider",
    "classify",
    "error_in_body",
    "resolve_key",
]

log = logging.getLogger("tether.ai")

C = TypeVar("C")
R = TypeVar("R")


def resolve_key(api_key: str | None, env: str | None, provider: str) -> str | None:
    if api_key:
        return api_key
    return os.environ.get(env) if env else None


def require_key(key: str | None, env: str | None, provider: str) -> None:
    if not key:
        where = f"set {env} in the environment or " if env else ""
        raise MissingAPIKeyError(
            f"{provider} has no API key: {where}pass api_key= to tether.ai.{provider}(...)"
        )


class ClientPerLoop(Generic[C]):
    """An SDK client per event loop: an async HTTP client must not cross loops
    (the App's own loop thread, a worker's loop, a test's)."""

    def __init__(self, make: Callable[[], C]) -> None:
        self._make = make
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, C]] = {}

    def get(self) -> C:
        loop = asyncio.get_running_loop()
        found = self._clients.get(id(loop))
        if found is None or found[0] is not loop:
            self._clients = {k: v for k, v in self._clients.items() if not v[0].is_closed()}
            found = (loop, self._make())
            self._clients[id(loop)] = found
        return found[1]

    async def aclose(self) -> None:
        """Close the client of the running loop (the others close with their loops)."""
        loop = asyncio.get_running_loop()
        found = self._clients.pop(id(loop), None)
        if found is not None and found[0] is loop:
            await found[1].close()  # type: ignore[attr-defined]


def classify(
    exc: BaseException, provider: str, sdk: Any, model: str | None = None
) -> ProviderError:
    """An SDK exception as a `ProviderError`, retryable or not, naming the model."""
    about = f" for model {model}" if model else ""
    if isinstance(exc, sdk.APIConnectionError):  # a timeout is one too (its subclass)
        if isinstance(exc, sdk.APITimeoutError):
            what = f"the request{about} timed out"
        else:  # a connection refused, or one dropped mid-answer: the cause tells which
            cause = exc.__cause__
            why = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
            what = f"the connection failed{about} ({why})"
        return ProviderError(
            f"{provider}: {what}", retryable=True, model=model, billed=_maybe_sent(exc)
        )
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        headers = getattr(exc.response, "headers", {}) or {}
        retryable = status in (408, 409, 429) or status >= 500
        return ProviderError(
            f"{provider} answered {status}{about}: {_message(exc)}",
            status=status,
            retryable=retryable,
            retry_after=_retry_after(headers),
            retry_at=_retry_at(headers),
            request_id=getattr(exc, "request_id", None) or headers.get("x-request-id"),
            model=model,
        )
    return ProviderError(f"{provider}{about}: {type(exc).__name__}: {exc}", model=model)


# the HTTP client's errors (httpx's, or a fork's of the same names) raised before any of
# the request went out: no connection, none free in the pool, a request it would not send
_UNSENT = frozenset(
    {"ConnectError", "ConnectTimeout", "PoolTimeout", "ProxyError", "UnsupportedProtocol",
     "LocalProtocolError"}
)  # fmt: skip


def _maybe_sent(exc: BaseException) -> bool:
    """Whether a timeout or lost connection (the SDK's error, the HTTP client's its
    cause) may have come after the request went out: then the provider may have taken
    it and billed it. Only a failure to connect or to start sending is known to be
    free; a read or write that failed, or a cause not told, may not be."""
    cause = exc.__cause__
    if cause is None:
        return True
    return not any(cls.__name__ in _UNSENT for cls in type(cause).__mro__)


# a 200 body that is not JSON: malformed, or not even UTF-8 (a binary or latin-1 page
# from a proxy, which json reads as a UnicodeDecodeError)
_NOT_JSON = (json.JSONDecodeError, UnicodeDecodeError)

# error types a provider answers for a failure on its side: worth another attempt
_TRANSIENT = frozenset(
    {"server_error", "api_error", "overloaded_error", "rate_limit_error", "timeout", "overloaded"}
)


def error_in_body(
    raw: dict[str, Any], provider: str, model: str, answered: bool
) -> ProviderError | None:
    """The error a 200 answer carries instead of a result (`answered` is False: it
    holds none), as some gateways and proxies send, or one that holds neither; None
    for a real answer. Read as a success it would be an empty answer logged at a
    price of $0."""
    err = raw.get("error")
    if answered:
        return None
    if not err:  # neither a result nor an error (`"choices": []`, as some gateways send)
        return ProviderError(
            f"{provider} answered 200 for model {model} without a result and without an "
            "error; retried as a server error",
            status=200,
            retryable=True,
            request_id=raw.get("id") if isinstance(raw.get("id"), str) else None,
            model=model,
        )
    err = err if isinstance(err, dict) else {"message": str(err)}
    kind = str(err.get("type") or err.get("code") or "")
    code = err.get("code")
    retryable = kind in _TRANSIENT or (isinstance(code, int) and (code == 429 or code >= 500))
    return ProviderError(
        f"{provider} answered 200 for model {model} with an error instead of a result: "
        f"{err.get('message') or kind or err}",
        status=200,
        retryable=retryable,
        request_id=raw.get("id") if isinstance(raw.get("id"), str) else None,
        model=model,
    )


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
    return str(getattr(exc, "message", exc))


def _retry_after(headers: Any) -> float | None:
    """Seconds the provider asked to wait: `retry-after-ms`, or `retry-after` as
    seconds (one given as an HTTP date is a time: `_retry_at`)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _retry_at(headers: Any) -> datetime | None:
    """The time `retry-after` names when given as an HTTP date (none with seconds, or
    `retry-after-ms`): the wait is counted from it by the clock the call runs on
    (`ProviderError.wait_from`), not by this machine's."""
    value = headers.get("retry-after")
    if value is None or _retry_after(headers) is not None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


# the typed SDK methods' own request keywords, as the client's request options
_REQUEST_OPTIONS = {"extra_headers": "headers", "extra_query": "params", "timeout": "timeout"}


def _request_options(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`body` without the SDK's request keywords (`options=` may carry them, as a typed
    SDK method takes them), and those as request options; `extra_body` merged into
    the body, as the SDK merges it."""
    if not any(k in body for k in ("extra_body", *_REQUEST_OPTIONS)):
        return body, {}
    rest = {k: v for k, v in body.items() if k != "extra_body" and k not in _REQUEST_OPTIONS}
    options = {_REQUEST_OPTIONS[k]: v for k, v in body.items() if k in _REQUEST_OPTIONS}
    return {**rest, **(body.get("extra_body") or {})}, options


@functools.cache
def _http_response(sdk: Any) -> type:
    """The response class of the HTTP library the SDK is built on (httpx, or in newer
    SDKs a fork of it): as `cast_to` it has the client hand the response over unread
    into models, headers and all."""
    for cls in sdk.DefaultAsyncHttpxClient.__mro__:
        if cls.__name__ == "AsyncClient" and cls.__module__.split(".")[0] != sdk.__name__:
            response: type = importlib.import_module(cls.__module__.split(".")[0]).Response
            return response
    raise InvalidArgumentError(
        f"the installed {sdk.__name__} package ({getattr(sdk, '__version__', '?')}) is "
        "built on no HTTP client tether knows; upgrade it (pip install -U "
        f"{sdk.__name__})"
    )


class _Default(enum.Enum):
    DEFAULT = "default"


DEFAULT = _Default.DEFAULT  # "the class's default", where None means "none"


class SDKProvider:
    """What an adapter over an official SDK shares: its key, one client per event
    loop, the SDK imported on first use, and the SDK's errors turned into
    `ProviderError`. A subclass names its SDK module and extra (`sdk_module`) and
    the SDK's async client class (`client_class`)."""

    name = "provider"
    sdk_module = ""  # the official package, also the name of tether's extra for it
    client_class = ""  # its async client, built with the same arguments by every SDK
    request_id_header = "x-request-id"  # the header an answer's request id comes in
    #: what a subclass defaults to: the key's environment variable, the catalog its
    #: prices are looked up in (genai-prices' provider id), the request timeout
    default_key_env: str | None = None
    default_price_id: str | None = None
    default_timeout = 120.0

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        api_key_env: str | _Default | None = DEFAULT,
        price_id: str | _Default | None = DEFAULT,
    ) -> None:
        self.api_key_env = self.default_key_env if api_key_env is DEFAULT else api_key_env
        self.price_id = self.default_price_id if price_id is DEFAULT else price_id
        self.base_url = base_url
        self.timeout = self.default_timeout if timeout is None else timeout
        self._api_key = api_key
        self._clients: ClientPerLoop[Any] = ClientPerLoop(self._client)

    def sdk(self) -> Any:
        """The SDK module, or a clear error saying how to install it."""
        try:
            return importlib.import_module(self.sdk_module)
        except ImportError:
            raise InvalidArgumentError(
                f"the {self.name} provider needs the {self.sdk_module} package: pip install "
                f"-e '.[{self.sdk_module}]' from a tether checkout (or pip install "
                f"{self.sdk_module})"
            ) from None

    def _client(self) -> Any:
        """A new SDK client (one per event loop), its own retries off. After `check`,
        only a provider that needs no key (a local OpenAI-compatible server) can lack
        one; the OpenAI SDK will not start without a key, so it gets the string
        "unused", which such servers ignore."""
        self.check()
        return getattr(self.sdk(), self.client_class)(
            api_key=self._key() or "unused",
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=0,
        )

    def ready(self) -> None:
        """Build the running loop's client (the SDK imported on first use) now, before
        the request is timed: a first call's `latency_ms` is the provider's time, not
        that of importing the SDK and building its client."""
        self._clients.get()

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _key(self) -> str | None:
        return resolve_key(self._api_key, self.api_key_env, self.name)

    def check(self) -> None:
        require_key(self._key(), self.api_key_env, self.name)

    async def _post_json(
        self,
        path: str,
        model: str,
        answered: Callable[[dict[str, Any]], bool],
        body: Any,
        output: bool = True,
    ) -> tuple[dict[str, Any], str | None]:
        """`model`'s answer to `body` (JSON already) and its request id, or the error a
        200 carries instead (`answered` tells a body that holds a result; see
        `error_in_body`), `billed` with the usage the body told (`_told`; `output`:
        False for an embedding, which has no output count). Posted through the
        client's `post` (its auth, headers, timeout and errors) and read as JSON once:
        the typed SDK method walks the body against its parameter types and builds the
        answer into models we would dump back to a dict, a third of the call's CPU
        spent for nothing here."""
        sdk = self.sdk()
        body, options = _request_options(body)
        try:
            response = await self._clients.get().post(
                path, cast_to=_http_response(sdk), body=body, options=options
            )
        except sdk.APIError as exc:  # status errors, timeouts, dropped connections
            raise classify(exc, self.name, sdk, model) from exc
        try:
            raw = response.json()
        except _NOT_JSON as exc:  # a 200 whose body is not JSON (a proxy's page)
            raise self._not_json(exc, model, billed=True) from exc
        if not isinstance(raw, dict):
            raise ProviderError(
                f"{self.name} answered 200 for model {model} with a JSON body that is not "
                f"an object ({type(raw).__name__}); retried as a server error",
                status=200,
                retryable=True,
                model=model,
                billed=True,
            )
        failed = error_in_body(raw, self.name, model, answered=answered(raw))
        if failed is not None:
            failed.billed, failed.usage = True, self._told(raw, output=output)
            raise failed
        return raw, response.headers.get(self.request_id_header)

    def _told(self, raw: Any, *, output: bool = True) -> Usage | None:
        """The usage a body of this API tells, if it tells one that can be priced (its
        input count, and its output count for a generation); None otherwise. A
        subclass reads its API's usage block."""
        return None

    async def _call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        sdk = self.sdk()
        model = kwargs.get("model")
        try:
            return await fn(*args, **kwargs)
        except sdk.APIError as exc:  # status errors, timeouts, dropped connections
            raise classify(exc, self.name, sdk, model) from exc
        except _NOT_JSON as exc:  # a 200 whose body is not JSON (a proxy's page)
            raise self._not_json(exc, model) from exc

    def _not_json(self, exc: ValueError, model: str | None, billed: bool = False) -> ProviderError:
        about = f" for model {model}" if model else ""
        return ProviderError(
            f"{self.name} answered{about} with a body that is not JSON ({exc}); "
            "retried as a server error",
            retryable=True,
            model=model,
            billed=billed,
        )

    def _read(self, model: str, build: Callable[[], R], raw: Any = None, output: bool = True) -> R:
        """The answer `build` reads out of a 200's body `raw`, or a retryable
        ProviderError saying the body is not of the API's shape (``choices`` a string, a
        content block null): read as it came, the run failed on a bare AttributeError
        or TypeError naming neither provider nor model, and the call was never logged.
        The error is `billed`, with the usage `raw` told (`_told`, `output` as there)."""
        try:
            return build()
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            raise self._unreadable(model, exc, raw, output) from exc

    def _unreadable(
        self, model: str, exc: Exception, raw: Any, output: bool = True
    ) -> ProviderError:
        """The error of a 200 whose body `raw` is not of the API's shape (`_read`)."""
        return ProviderError(
            f"{self.name} answered 200 for model {model} with a body not of its API's "
            f"shape ({type(exc).__name__}: {exc}); retried as a server error (a proxy "
            "or gateway in between may be rewriting answers)",
            status=200,
            retryable=True,
            model=model,
            billed=True,
            usage=self._told(raw, output=output),
        )

    def _batch_lines(
        self, text: str, read: Callable[[dict[str, Any], str], BatchItemResult]
    ) -> list[BatchItemResult]:
        """A batch's results file (JSON lines), each line `read` with its custom_id. A
        line not of the batch API's shape fails its own request (`_odd_line`), never
        the whole collect (which failed on a bare KeyError or AttributeError, every
        line's billed result thrown away with it); one whose custom_id cannot be read
        is a result of its own (`_lost_line`): skipped, it was counted as free."""
        found: list[BatchItemResult] = []
        for one in text.splitlines():
            if not one.strip():
                continue
            line: Any = None
            try:
                line = json.loads(one)
                custom_id = line["custom_id"]
                if not isinstance(custom_id, str):
                    raise TypeError(f"custom_id is {type(custom_id).__name__}, not a string")
            except (*_NOT_JSON, TypeError, KeyError, IndexError) as exc:
                found.append(self._lost_line(one, line, exc))
                continue
            try:
                found.append(read(line, custom_id))
            except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
                found.append(self._odd_line(custom_id, exc, line))
        return found

    def _lost_line(self, raw: str, line: Any, exc: Exception) -> BatchItemResult:
        """A result line whose custom_id cannot be read, as a failed result of its own
        (keyed `UNREADABLE_LINE` and the line's digest): it may be any request's, and
        billed, so it is logged with its cost unknown unless its answer tells usage."""
        log.warning("%s: a batch result line without a custom_id (%s)", self.name, exc)
        told = self._told(self._line_body(line)) if isinstance(line, dict) else None
        digest = hashlib.sha256(raw.encode(errors="replace")).hexdigest()[:16]
        message = (
            f"{self.name} gave a batch result line whose custom_id could not be read "
            f"({type(exc).__name__}: {exc}), so which request it answers is unknown; it "
            "may have been billed, at a cost tether cannot tell"
        )
        return BatchItemResult(
            custom_id=UNREADABLE_LINE + digest,
            ok=False,
            error=json.dumps({"code": "unreadable_line", "message": message}),
            reply=ModelReply(usage=told or Usage(), usage_reported=told is not None),
        )

    def _line_body(self, line: dict[str, Any]) -> Any:
        """Where a result line of this API holds its answer (a subclass says)."""
        return None

    def _odd_line(self, custom_id: str, exc: Exception, line: dict[str, Any]) -> BatchItemResult:
        """A result line not of the API's shape as its request's failure, in the batch
        APIs' per-item error shape (OpenAI's ``{"code", "message"}``). It may have been
        billed: its reply holds the usage its answer told (`_told`), else none told."""
        told = self._told(self._line_body(line))
        message = (
            f"{self.name} gave a batch result not of its API's shape "
            f"({type(exc).__name__}: {exc}); submit this request again"
        )
        return BatchItemResult(
            custom_id=custom_id,
            ok=False,
            error=json.dumps({"code": "unreadable_result", "message": message}),
            reply=ModelReply(usage=told or Usage(), usage_reported=told is not None),
        )
