"""Errors at rest: one typed record, and one codec that writes and reads it.

A failed run or step, and a cancelled run, record an `ErrorRecord` as JSON::

    {"type", "module", "qualname", "message", "retryable", "traceback", "cause",
     "attributes", "retry_at"}

`encode_error` writes an exception, `encode_record` a record made by hand (a
cancellation), and `decode_error` reads any of them back, including rows
written before ``retryable`` and ``cause`` existed (they read as None) and
bare JSON values (read as the message of an ``Exception``).

``retryable`` is the verdict of the step's retry policy on this error (would
it try again, attempts aside) when a step recorded it; otherwise what the
exception says of itself (a bool ``retryable`` attribute, as a
`tether.ai.ProviderError` has); otherwise None: nobody decided (a run's own
failure has no retry policy). ``cause`` is the ``__cause__`` chain (``raise
... from ...``), at most `MAX_CAUSES` deep; the traceback text, recorded on
the outermost record only, already shows the whole chain. ``retry_at``, on a
step attempt's failure that its policy retries, is when the next attempt is
due: the back-off outlives the process that began it.

Asking a failed run for its result again raises the same exception type as
the first time: the class is found again by module and name and rebuilt with
the recorded message (without calling its ``__init__``, whose signature we
cannot know) and the public attributes it had that JSON holds as they were
(``status``, ``spent_usd``, ...: what an ``except`` clause reads); where the
class cannot be found, `RunFailedError` stands in.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import inspect
import json
import math
import traceback
from dataclasses import dataclass, replace
from typing import Any

from .errors import RunFailedError
from .serde import dump_json

__all__ = [
    "MAX_CAUSES",
    "ErrorRecord",
    "attribute_of",
    "decode_error",
    "encode_error",
    "encode_record",
    "error_text",
    "revive_error",
    "revived",
    "tagged",
    "untagged",
]

MAX_CAUSES = 8  # causes kept below the outermost error
MAX_ATTRIBUTE = 4096  # characters of JSON an attribute may take to be kept
# characters of an error's message, and of its traceback, kept in its record (and its
# events): an error carrying a whole response body or file (tens of megabytes) was
# written whole into the message, the traceback and every retry's event, taking
# seconds a write and the database's room; the head is kept and the cut is said
MAX_MESSAGE = 8_000_000
MAX_TRACEBACK = 16_000_000


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """An error as recorded on a run or a step (see the module docstring)."""

    type: str  # the class name: ``ValueError``
    message: str
    module: str | None = None  # where the class lives: ``builtins``
    qualname: str | None = None  # its qualified name in that module
    retryable: bool | None = None  # would the step's policy retry it; None: not decided
    traceback: str | None = None
    cause: ErrorRecord | None = None  # the error it was raised from
    # its public instance attributes that JSON holds as they are (None: none)
    attributes: dict[str, Any] | None = None
    # a step attempt's failure that will be retried: when the next attempt is due (UTC
    # ISO 8601), so a drive that resumes the run in its back-off waits out the rest
    retry_at: str | None = None

    @classmethod
    def of(cls, exc: BaseException, *, retryable: bool | None = None) -> ErrorRecord:
        """`exc` as a record, with its cause chain. An exception that breaks as it is
        read (a property or ``__getattr__`` that raises, an ``args`` that cannot be
        read) still gives a record, of what could be read: before, the error raised
        while recording it left the step (and its run) `running` for good."""
        tb = _traceback_of(exc)
        try:
            return _record(exc, retryable, tb, MAX_CAUSES)
        except Exception:
            kind = type(exc)
            message = error_text(exc)
            return cls(kind.__name__, message, kind.__module__, kind.__qualname__, retryable, tb)

    @classmethod
    def cancelled(cls, reason: str | None) -> ErrorRecord:
        """What a cancelled run records: the reason it was given."""
        return cls("Cancelled", reason or "cancelled", retryable=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape at rest (and in `RunRecord.to_dict`); attributes JSON would
        change (a tuple, bytes) go under ``exact_attributes`` in tagged form, so that
        ``attributes`` stays what an older tether reads."""
        plain, exact = _split(self.attributes)
        shape = {
            "type": self.type,
            "module": self.module,
            "qualname": self.qualname,
            "message": self.message,
            "retryable": self.retryable,
            "traceback": self.traceback,
            "cause": None if self.cause is None else self.cause.to_dict(),
            "attributes": plain,
        }
        if exact:
            shape["exact_attributes"] = exact
        if self.retry_at is not None:
            shape["retry_at"] = self.retry_at
        return shape

    @classmethod
    def from_dict(cls, data: Any, depth: int = 0) -> ErrorRecord:
        """A record from its JSON shape, old or new; a bare value is the message."""
        if not isinstance(data, dict):
            return cls("Exception", data if isinstance(data, str) else json.dumps(data))
        cause = data.get("cause")
        retryable = data.get("retryable")
        attributes = _merged(data.get("attributes"), data.get("exact_attributes"))
        return cls(
            type=_text(data.get("type")) or "Exception",
            message=_text(data.get("message")) or "",
            module=_text(data.get("module")),
            qualname=_text(data.get("qualname")),
            retryable=retryable if isinstance(retryable, bool) else None,
            traceback=_text(data.get("traceback")),
            cause=cls.from_dict(cause, depth + 1)
            if cause is not None and depth < MAX_CAUSES
            else None,
            attributes=attributes,
            retry_at=_text(data.get("retry_at")),
        )

    def causes(self) -> list[ErrorRecord]:
        """This record and the ones it was raised from, outermost first."""
        chain: list[ErrorRecord] = []
        at: ErrorRecord | None = self
        while at is not None:
            chain.append(at)
            at = at.cause
        return chain


def error_text(exc: BaseException) -> str:
    """``str(exc)``, or what Python's tracebacks print when that raises: an exception
    whose ``__str__`` is broken must still be recorded (and the step retried), not
    replace the step's failure with an error of tether's own; in text any store keeps
    (`storable`), as it goes into events too."""
    try:
        return _capped(str(storable(str(exc))), MAX_MESSAGE)
    except Exception:
        return "<exception str() failed>"


def _traceback_of(exc: BaseException) -> str | None:
    """The traceback text of `exc` (with its chain), capped; for one whose notes or
    chain cannot be read, its frames and its line."""
    try:
        return _capped("".join(traceback.format_exception(exc)), MAX_TRACEBACK)
    except Exception:
        pass
    try:
        frames = "".join(traceback.format_tb(exc.__traceback__))
    except Exception:
        frames = ""
    text = f"Traceback (most recent call last):\n{frames}{type(exc).__qualname__}: "
    return _capped(text + error_text(exc), MAX_TRACEBACK)


def _capped(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and how many more were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit:,} more characters cut]"


def attribute_of(exc: BaseException, name: str) -> Any:
    """`exc.name`, or None when it has none or reading it raises."""
    try:
        return getattr(exc, name, None)
    except Exception:
        return None


def _record(exc: BaseException, retryable: bool | None, tb: str | None, left: int) -> ErrorRecord:
    cls = type(exc)
    if retryable is None:
        said = attribute_of(exc, "retryable")
        retryable = said if isinstance(said, bool) else None
    cause = attribute_of(exc, "__cause__")
    cause = cause if isinstance(cause, BaseException) else None
    return ErrorRecord(
        type=cls.__name__,
        message=error_text(exc),
        module=cls.__module__,
        qualname=cls.__qualname__,
        retryable=retryable,
        traceback=tb,
        cause=None if cause is None or left <= 0 else _record(cause, None, None, left - 1),
        attributes=_attributes(exc),
    )


def _attributes(exc: BaseException) -> dict[str, Any] | None:
    """The public instance attributes of `exc` that come back from JSON (tagged, for a
    tuple or bytes: `tagged`) equal and of the same type, each small."""
    try:
        return _attributes_read(exc)
    except Exception:  # its args or __dict__ cannot be read: the error still is recorded
        return None


def _attributes_read(exc: BaseException) -> dict[str, Any] | None:
    kept: dict[str, Any] = {}
    # its args too (as a list: setting them back makes a tuple again), so a replay's
    # exc.args and str(exc) are the first run's (a KeyError's str quotes its arg)
    given = [("args", list(exc.args))] if exc.args != (error_text(exc),) else []
    fields = [*given, *_builtin_fields(exc), *getattr(exc, "__dict__", {}).items()]
    for name, value in fields:
        if not name.startswith("_") and _kept_form(value) is not None:
            kept[name] = value
    return {**kept, **_own_attributes(exc)} or None


def _own_attributes(exc: BaseException) -> dict[str, Any]:
    """What `exc` says to record of itself beyond its plain attributes: a class whose
    public attribute JSON cannot hold (`ForEachError.summary`) gives its JSON data from
    ``_recorded_attributes()`` (of any size) and takes it back through ``setattr`` when
    revived. One that fails or gives no JSON object is left out: the error is still
    recorded."""
    own = attribute_of(exc, "_recorded_attributes")
    try:
        data = own() if callable(own) else None
        json.dumps(data, allow_nan=False)
    except Exception:
        return {}
    return {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}


def _kept_form(value: Any, limit: int | None = MAX_ATTRIBUTE) -> tuple[bool, Any] | None:
    """(True, `value`) when JSON brings it back as it is; (False, its tagged form) when
    only that does (a ``KeyError(("a", 1))``'s tuple, a ``UnicodeDecodeError``'s bytes:
    left out, a replay's args and str() were not the first run's); None when neither
    does within `limit` characters (None: any size)."""
    for plain in (True, False):
        try:
            data = value if plain else tagged(value)
            text = json.dumps(data, allow_nan=False)
            back = json.loads(text) if plain else untagged(json.loads(text))
        except (TypeError, ValueError, RecursionError):
            continue
        if (limit is None or len(text) <= limit) and _same(back, value):
            return plain, data
    return None


def tagged(value: Any) -> Any:
    """`value` as JSON data in which every object is a tag, so nothing is ambiguous."""
    kind = type(value)
    if value is None or kind in (str, int, bool, float):
        return value
    if kind is list:
        return [tagged(v) for v in value]
    if kind is tuple:
        return {"$tuple": [tagged(v) for v in value]}
    if kind is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if kind is dict:
        return {"$dict": [[tagged(k), tagged(v)] for k, v in value.items()]}
    raise TypeError(f"{kind.__name__} has no tagged form")


def untagged(data: Any) -> Any:
    """The value `tagged` made `data` of."""
    if isinstance(data, list):
        return [untagged(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$tuple" in data:
        return tuple(untagged(v) for v in data["$tuple"])
    if "$bytes" in data:
        return base64.b64decode(data["$bytes"], validate=True)
    return {untagged(k): untagged(v) for k, v in data["$dict"]}


def _split(attributes: dict[str, Any] | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """`attributes` as (those JSON keeps as they are, the others tagged); their size
    was checked as they were taken from the exception (`_attributes`): an attribute
    over `MAX_ATTRIBUTE` here is one the exception gave of itself, kept whole."""
    plain: dict[str, Any] = {}
    exact: dict[str, Any] = {}
    for name, value in (attributes or {}).items():
        form = _kept_form(value, None)
        if form is not None:
            (plain if form[0] else exact)[name] = form[1]
    return plain or None, exact


def _merged(plain: Any, exact: Any) -> dict[str, Any] | None:
    """The attributes of a record at rest; a tagged one that does not read is lost."""
    merged = dict(plain) if isinstance(plain, dict) else {}
    for name, data in (exact if isinstance(exact, dict) else {}).items():
        with contextlib.suppress(Exception):
            merged[name] = untagged(data)
    return merged or None


def _builtin_fields(exc: BaseException) -> list[tuple[str, Any]]:
    """The fields a built-in exception keeps outside its ``__dict__`` (an `OSError`'s
    ``errno``, ``strerror`` and ``filename``, which its str() is made of), those set:
    left out, a replayed ``FileNotFoundError`` had ``errno`` None and read
    ``(2, 'No such file or directory')``, so an ``except`` testing them went
    another way."""
    fields: list[tuple[str, Any]] = []
    for cls in type(exc).__mro__:
        if cls.__module__ != "builtins" or cls in (BaseException, Exception, object):
            continue
        for name, slot in vars(cls).items():
            if name.startswith("_") or not inspect.isdatadescriptor(slot):
                continue
            with contextlib.suppress(Exception):  # one unset reads as an AttributeError
                value = getattr(exc, name)
                if value is not None:
                    fields.append((name, value))
    return fields


def _same(back: Any, value: Any) -> bool:
    if type(back) is not type(value):
        return False
    if isinstance(value, list | tuple):
        return len(back) == len(value) and all(map(_same, back, value))
    if isinstance(value, dict):
        return back.keys() == value.keys() and all(_same(back[k], value[k]) for k in value)
    return bool(back == value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def encode_record(record: ErrorRecord) -> str:
    """`record` as the JSON text recorded on a run or step, in text any store keeps."""
    return dump_json(storable(record.to_dict()), what="error")


def storable(value: Any) -> Any:
    """An error's record with what a store cannot keep spelled out: a NUL character
    (PostgreSQL keeps none) as ``\\x00``, a lone surrogate (no valid UTF-8) as
    ``\\udc80``, NaN and infinities as their names. Refused, they left the failed run
    (or step) running for good, failing again at each drive."""
    if isinstance(value, str):
        text = value.replace("\x00", "\\x00")
        return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def encode_error(
    exc: BaseException, *, retryable: bool | None = None, retry_at: str | None = None
) -> str:
    """`exc` as the JSON text recorded on a run or step (`retryable`: the retry
    policy's verdict, when one decided; `retry_at`: when a step's next attempt is due)."""
    record = ErrorRecord.of(exc, retryable=retryable)
    return encode_record(record if retry_at is None else replace(record, retry_at=retry_at))


def decode_error(text: str | None) -> ErrorRecord | None:
    """The record of JSON text written by `encode_error` (or an older tether)."""
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:  # not JSON at all: keep what it says
        return ErrorRecord("Exception", text)
    return None if data is None else ErrorRecord.from_dict(data)


def revive_error(workflow_id: str, error: ErrorRecord | None) -> Exception:
    """The exception a failed run raised, rebuilt from its record."""
    error = error or ErrorRecord("Exception", "")
    return revived(error) or RunFailedError(workflow_id, error.type, error.message)


def revived(error: ErrorRecord) -> Exception | None:
    """The recorded exception rebuilt as its own class (its message and the attributes
    kept), so an ``except`` that caught it the first time catches it again; None when
    the class cannot be found or built here. Its ``__cause__`` chain is rebuilt too, as
    far as those classes can be: without it, code that read the first run's
    ``exc.__cause__`` went another way on replay, where it was None."""
    exc = _revived_alone(error)
    at, record = exc, error.cause
    while at is not None and record is not None:
        cause = _revived_alone(record)
        if cause is not None:
            at.__cause__ = cause  # (suppresses the context, as ``raise ... from`` does)
        at, record = cause, record.cause
    return exc


def _revived_alone(error: ErrorRecord) -> Exception | None:
    """`revived` without its cause."""
    cls = _find_class(error.module, error.qualname or error.type)
    if cls is None:
        return None
    try:
        exc = cls.__new__(cls)
        exc.args = (error.message,)
    except Exception:  # a class that refuses to be built this way
        return None
    for name, value in (error.attributes or {}).items():
        # a read-only property, a slot it lacks: that attribute is lost
        with contextlib.suppress(Exception):
            setattr(exc, name, value)
    return exc


def _find_class(module: Any, qualname: Any) -> type[Exception] | None:
    if not isinstance(qualname, str):
        return None
    try:
        if not isinstance(module, str):
            module = "builtins"
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:
        return None
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return None
