"""JSON at rest, typed on the way out.

Values are dumped through pydantic (so models, dataclasses, datetimes and
enums become JSON) and, when the caller knows the type, validated back into
it. Nothing is pickled. A value that cannot be stored raises
`NotSerializableError` naming what was being stored and the offending type,
before anything is written.

What JSON (or one of the two databases) cannot carry is refused the same way
on both backends, with the path of the offending part: NaN and infinities,
integers too long to turn into text, lone surrogates (not valid Unicode), the
NUL character (PostgreSQL cannot store it), and values nested more than
`MAX_DEPTH` levels deep (or containing themselves). Where no type is declared,
a set is refused too: JSON keeps it as a list, which is what would be read back.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, PydanticUserError, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python

from .errors import InvalidArgumentError, NotSerializableError

__all__ = [
    "MAX_DEPTH",
    "check_type",
    "dump_json",
    "dump_plain",
    "is_plain",
    "load_json",
    "read_back_change",
    "resolve_annotation",
    "return_type_of",
    "to_json_data",
    "type_name",
    "validate",
]

_NO_TYPE: Any = object()

MAX_DEPTH = 254
"""The most containers a stored value may nest (pydantic-core refuses a 255th)."""

_NESTED_FIX = (
    "Flatten it (e.g. a list of nodes that name their parent) or store the deep part as a string."
)


@functools.lru_cache(maxsize=1024)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def check_type(tp: Any, what: str, fix: str = "") -> None:
    """Refuse a declared type that no value can be stored as, before anything runs.

    Pydantic builds a type's schema on first use: for a class it knows nothing of
    (``-> httpx.Response``), ``typing.TypedDict`` before Python 3.12, a model with an
    undefined forward reference or a value that is no type (``result_type=[int]``) it
    raises its own error, which reached the caller only after the step's function had
    run (its side effect done) and failed the step for good."""
    if tp is None:
        return
    try:
        _adapter(tp)
    except (PydanticUserError, NameError, TypeError) as exc:
        reason = str(exc).split("\n", 1)[0].split(". ", 1)[0].rstrip(".")
        raise InvalidArgumentError(
            f"{what} declares the type {type_name(tp)}, which tether cannot store as JSON "
            f"({reason}). Declare a type pydantic can validate (a pydantic model, a "
            f"dataclass, plain types such as dict[str, int]){fix}"
        ) from None


def return_type_of(fn: Callable[..., Any]) -> Any:
    """The declared return type of `fn`, or None when it declares none usable.

    A step function is often a lambda, a closure or a ``partial`` made afresh
    for each step: the answer is cached by the code and the return annotation
    that all the functions one ``def`` or ``lambda`` makes share, never by the
    callable itself, which would keep alive whatever it captured (a large
    document, a client) for as long as the cache holds it. Other callables
    (objects with ``__call__``) are not cached.
    """
    declared = getattr(fn, "__tether_returns__", _NO_TYPE)  # a workflow object's own say
    if declared is not _NO_TYPE:
        return declared
    if isinstance(fn, functools.partial):
        return return_type_of(fn.func)
    plain = fn.__func__ if isinstance(fn, types.MethodType) else fn
    if not isinstance(plain, types.FunctionType):
        return _return_type(fn)
    annotation = plain.__annotations__.get("return", _NO_TYPE)
    if annotation is _NO_TYPE:
        return None
    # a decorated function's hints are read in the module of the one it wraps
    origin = inspect.unwrap(plain) if hasattr(plain, "__wrapped__") else plain
    try:
        key = (plain.__code__, getattr(origin, "__code__", None), annotation)
        found = _BY_CODE.get(key, _NO_TYPE)
    except TypeError:  # an unhashable annotation
        return _return_type(plain)
    if found is _NO_TYPE:
        if len(_BY_CODE) >= 4096:
            _BY_CODE.clear()
        found = _BY_CODE[key] = _return_type(plain)
    return found


def resolve_annotation(fn: Any, name: str, what: str, default: Any = None) -> Any:
    """`fn`'s annotation `name` ("return": its return type) resolved on its own, in the
    module of the function it wraps; `default` when it declares none.

    One at a time: another annotation that exists only for type checkers (``wf:
    Workflow`` imported under ``TYPE_CHECKING``) would otherwise hide the one asked for
    (a declared ``-> date`` came back from the record as a str). One that does not
    resolve raises `InvalidArgumentError` naming `what` (e.g. "the input parameter
    'order' of workflow 'ship'")."""
    annotations = getattr(fn, "__annotations__", None)
    if not isinstance(annotations, dict) or name not in annotations:
        return default
    unwrapped = inspect.unwrap(fn) if hasattr(fn, "__wrapped__") else fn
    one = type("_OneHint", (), {"__annotations__": {name: annotations[name]}})
    try:
        hints = typing.get_type_hints(one, getattr(unwrapped, "__globals__", None), {})
    except Exception as exc:
        raise InvalidArgumentError(
            f"{what} is annotated {annotations[name]!r}, which cannot be resolved at run time "
            f"({type(exc).__name__}: {exc}); define that type at module level (not only under "
            "TYPE_CHECKING)"
        ) from None
    return hints.get(name, default)


def _return_hint(target: Any) -> Any:
    """`target`'s resolved return annotation; `_NO_TYPE` when it has none, or one that
    does not resolve (the result is then stored and read back as plain JSON)."""
    try:
        return resolve_annotation(target, "return", "the return type", _NO_TYPE)
    except InvalidArgumentError:
        return _NO_TYPE


# (code, the wrapped function's code, return annotation) -> the type: see `return_type_of`
_BY_CODE: dict[tuple[Any, ...], Any] = {}


def _return_type(fn: Callable[..., Any]) -> Any:
    declared = getattr(fn, "__tether_returns__", _NO_TYPE)  # a workflow object's own say
    if declared is not _NO_TYPE:
        return declared
    target = fn
    if isinstance(fn, functools.partial):
        target = fn.func
    tp = _return_hint(target)
    if tp is _NO_TYPE or tp is Any:
        return None
    if inspect.iscoroutinefunction(target):
        return tp
    origin = typing.get_origin(tp)
    if origin is not None and origin.__name__ in {"Coroutine", "Awaitable"}:
        args = typing.get_args(tp)
        return args[-1] if args else None
    return tp


def to_json_data(value: Any, *, what: str, tp: Any = None) -> Any:
    """`value` as plain JSON data (dicts, lists, str, numbers, bool, None)."""
    data = _json_data(value, what, tp)
    if type(data) in _HAS_TEXT:
        try:
            text = to_json(data).decode()
        except Exception:  # refused where it is written, with its path
            return data
        if _MINUTE_OFFSET.search(text):
            data = _exact_offsets(value, tp, data)
    return data


def _json_data(value: Any, what: str, tp: Any) -> Any:
    if tp is None:
        _refuse_set(value, what)
    try:
        if tp is not None:
            # warnings="error": a value that is not of the declared type would be written
            # as it is and fail validation on replay, so it is refused now; by alias, as a
            # model reads its fields back (``Field(alias="from")``, an alias generator)
            data = _adapter(tp).dump_python(value, mode="json", warnings="error", by_alias=True)
        else:
            data = to_jsonable_python(value)
    except PydanticSerializationError as exc:
        _check_depth(value, what)
        if "UnexpectedValue" in str(exc):
            raise NotSerializableError(
                what,
                type(value),
                problem=f"does not match the declared type {type_name(tp)}",
                fix="Pass a value of that type, or change the annotation to what is returned.",
            ) from None
        bad, path = _find_unserialisable(value, "$")
        raise _unserialisable(what, bad, path) from None
    except OverflowError:  # an int declared a float, too large for one: float() failed
        raise _too_big(value, what) from None
    except (TypeError, ValueError, RecursionError) as exc:
        _check_depth(value, what)
        bad, path = _find_unserialisable(value, "$")
        if bad is type(None):
            if isinstance(exc, RecursionError) or "depth" in str(exc):
                raise NotSerializableError(
                    what,
                    type(value),
                    problem=f"is nested more than {MAX_DEPTH} levels deep (or contains itself)",
                    fix=_NESTED_FIX,
                ) from None
            if _first(value, _has_surrogate) is not None:  # pydantic refuses such dict keys
                raise _refusal(value, what) from None
            raise NotSerializableError(what, type(value)) from exc
        raise _unserialisable(what, bad, path) from None
    return data


def _refuse_set(value: Any, what: str) -> None:
    """Refuse a set in plain containers: JSON writes it as a list, so whoever reads it
    back (a waiting run, a replay) got a list where a set was sent, and nothing said so.

    Iterative, bounded by `MAX_DEPTH`, each container walked once."""
    if type(value) in _PLAIN:
        return
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    seen: set[int] = set()  # a part met twice (shared, or containing itself) is walked once
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, set | frozenset):
            raise NotSerializableError(
                what,
                type(item),
                _short_path(path),
                problem="is a set, which JSON stores as a list: it would be read back a list",
                fix="Send a list (e.g. sorted(...)) and make it a set where it is read.",
            )
        if depth >= MAX_DEPTH or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend((v, f"{path}{_key_path(k)}", depth + 1) for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item))


def _unserialisable(what: str, bad: type, path: str) -> NotSerializableError:
    if issubclass(bad, bytes | bytearray):  # JSON holds them as text: UTF-8 text only
        return NotSerializableError(
            what,
            bad,
            path,
            problem="holds bytes that are not UTF-8 text",
            fix="Declare the type as pydantic.Base64Bytes (stored as base64), or return "
            "text (bytes.decode) or a base64 str.",
        )
    return NotSerializableError(what, bad, path)


# what json.dumps(separators=(",", ":"), ensure_ascii=False, allow_nan=False) builds per call
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# values that are their own JSON data: pydantic would hand them back unchanged
_PLAIN = frozenset({str, int, bool, type(None)})


def dump_json(value: Any, *, what: str, tp: Any = None) -> str:
    """Serialise `value` to a JSON string, or raise `NotSerializableError`."""
    cls = type(value)
    if cls is int and (tp is None or tp is int):  # its digits: none of the scans below can hit
        try:
            return int.__repr__(value)  # what the encoder writes for one
        except ValueError:  # too long for str()
            raise _refusal(value, what) from None
    plain = cls in _PLAIN and (tp is None or tp is cls)
    data = value if plain else _json_data(value, what, tp)
    try:
        text = _ENCODER.encode(data)
        if _MINUTE_OFFSET.search(text):
            data = _exact_offsets(value, tp, data)
            text = _ENCODER.encode(data)
    except (ValueError, RecursionError):  # NaN/inf, or an int too long for str()
        raise _refusal(data, what) from None
    # cheap scans of the text; the walk that finds the path runs only on a hit
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise _refusal(data, what) from None
    if "\\u0000" in text:
        found = _first(data, _has_nul)
        if found is not None:
            raise _nul_error(what, *found)
    if tp is not None and "null" in text:
        # pydantic's JSON mode turns NaN and infinities under `Any` into null, which
        # would replay as None: look for them in a python-mode dump (only when a null
        # was written, so the common case costs a substring search)
        _refuse_hidden_non_finite(value, tp, what)
    if _NEGATIVE_ZERO.search(text):
        text = _ENCODER.encode(_unsigned_zeros(data))
    return text


def is_plain(data: Any) -> bool:
    """Whether `data` is plain JSON as `dump_plain` takes it: dicts with str keys, lists,
    str, int, float, bool and None (those very types, no subclasses), nested no deeper
    than pydantic dumps (no item more than `MAX_DEPTH` containers down, so an empty
    container may sit at that depth; a value containing itself goes deeper).

    Depth first, building no paths: a value containing itself reaches the limit
    within that many containers."""
    kind = type(data)
    if kind is not dict and kind is not list:
        return kind in _PLAIN_SCALARS
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            for key in item:
                if type(key) is not str:
                    return False
            items = item.values()
        else:
            items = item
        if depth >= MAX_DEPTH:
            if items:
                return False
            continue
        depth += 1
        for v in items:
            kind = type(v)
            if kind in _PLAIN_SCALARS:
                continue
            if kind is not list and kind is not dict:
                return False
            stack.append((v, depth))
    return True


_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


def dump_plain(data: Any, *, what: str) -> str:
    """`dump_json(data, what=what)` for `data` that `is_plain` holds for (its caller's
    walk proved it: `tether._results` does so of an untyped result before recording it).

    The same text, without the walk for sets and pydantic's copy that `dump_json`
    makes first: neither finds anything in such data. Whatever the encoder or the
    text's scans refuse (NaN and infinities, too long an int, a lone surrogate, NUL;
    a value containing itself) goes through `dump_json`, which names it and its path
    as it always has. Data `is_plain` refuses for its depth alone would be written
    here as it is: the encoder has no such limit."""
    if type(data) is int:  # `dump_json`'s shortcut: its digits, without the encoder
        return dump_json(data, what=what)
    try:
        text = _ENCODER.encode(data)
    except (ValueError, RecursionError):
        return dump_json(data, what=what)
    if (not text.isascii() and not _is_utf8(text)) or "\\u0000" in text:
        return dump_json(data, what=what)  # refused there (or a str held "\\u0000" as text)
    if _NEGATIVE_ZERO.search(text):
        text = _ENCODER.encode(_unsigned_zeros(data))
    return text


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -0.0 as JSON writes it (not -0.05, not -0.0e5): PostgreSQL's jsonb keeps numbers as
# numeric, which has no negative zero, so a replay there read 0.0 where the first run
# saw -0.0; both backends record 0.0, and the first run sees what a replay will
_NEGATIVE_ZERO = re.compile(r"-0\.0(?![0-9eE])")


def _unsigned_zeros(data: Any) -> Any:
    """`data` (plain JSON, within `MAX_DEPTH`) with each -0.0 made 0.0."""
    if type(data) is float:
        return 0.0 if data == 0.0 else data
    if type(data) is list:
        return [_unsigned_zeros(v) for v in data]
    if type(data) is dict:
        return {k: _unsigned_zeros(v) for k, v in data.items()}
    return data


def _refuse_hidden_non_finite(value: Any, tp: Any, what: str) -> None:
    """Refuse `value` if a NaN or infinity in it was written as null.

    The python-mode dump keeps them as floats; pydantic's own encoder spells
    them ``NaN``/``Infinity`` there, so the usual answer ("none") is two
    substring searches of bytes encoded in Rust, not a walk of the value in
    Python (which cost more than the dump it checks). Only a hit, which a
    string containing those words also gives, walks the value to be sure."""
    try:
        plain = _adapter(tp).dump_python(value, mode="python")
        spelled = to_json(plain, inf_nan_mode="constants")
    except Exception:  # the JSON-mode dump worked; nothing more to learn here
        return
    if b"NaN" not in spelled and b"Infinity" not in spelled:
        return
    data = to_jsonable_python(plain)
    if _first(data, _not_finite) is not None:
        raise _refusal(data, what)


def load_json(text: str | None, tp: Any = None) -> Any:
    """Parse stored JSON; validate into `tp` when given."""
    if text is None:
        return None
    data = json.loads(text)
    if tp is None:
        return data
    return validate(tp, data)


def validate(tp: Any, value: Any) -> Any:
    """`value` (a value or `to_json_data`'s data) validated into `tp`, as `load_json` reads
    it: a datetime or time in it whose UTC offset has seconds, written out in full, is
    read as one (pydantic cannot parse such text and refused it).

    Only the text pydantic refused is read as a moment, where the type asks for one: a
    str that merely reads like one under ``Any`` (or ``str``) stays a str, as it was
    returned. Read as a datetime there, a step's str came back from its record, first
    run and replay alike, as a datetime."""
    adapter = _adapter(tp)
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        first = exc
    refused = {
        e["input"]
        for e in first.errors(include_url=False, include_context=False)
        if _is_seconds_offset(e.get("input"))
    }
    if refused:
        try:
            return adapter.validate_python(_read_offsets(value, refused))
        except ValidationError:
            pass
    try:  # a strict model (ConfigDict(strict=True)) reads a datetime, UUID or enum from
        # its JSON text only in JSON mode: read in python mode, its recorded result
        # (billed once, recorded) failed the run on the way back
        return adapter.validate_json(json.dumps(value, allow_nan=False))
    except (ValidationError, TypeError, ValueError):
        pass
    raise first


def read_back_change(tp: Any, value: Any, revived: Any) -> tuple[str, Any, Any] | None:
    """Where `revived` (`value` written as `tp` and read back as `tp`) differs from
    `value`: (path, the part as given, the part as read back); None where they agree.

    Reading back validates without error yet may answer another value: a union whose
    members both take the JSON (``str | date`` reads ``"2026-01-02"`` as the str), or
    ``Any`` (a date, a tuple under ``-> dict``). The first run then saw that other
    value, not what it returned. Compared as python-mode dumps through `tp`, so a model
    revived as its declared class, a dataclass without ``__eq__`` or ``1`` for ``1.0``
    are the same; the walk runs only where plain ``==`` already says they differ."""
    try:
        if revived == value:
            return None
        adapter = _adapter(tp)
        given = adapter.dump_python(value, mode="python", by_alias=True, warnings=False)
        back = adapter.dump_python(revived, mode="python", by_alias=True, warnings=False)
        return _first_change(given, back, "$", 0)
    except Exception:  # no comparison to be had: as pydantic read it back
        return None


def _first_change(given: Any, back: Any, path: str, depth: int) -> tuple[str, Any, Any] | None:
    if given == back:
        return None
    pairs: list[tuple[Any, Any, str]] | None = None
    if depth < MAX_DEPTH and type(given) is type(back):
        if isinstance(given, dict) and given.keys() == back.keys():
            pairs = [(v, back[k], f"{path}{_key_path(k)}") for k, v in given.items()]
        elif isinstance(given, list | tuple) and len(given) == len(back):
            pairs = [
                (g, b, f"{path}[{i}]") for i, (g, b) in enumerate(zip(given, back, strict=True))
            ]
    if pairs is None:
        return _short_path(path), given, back
    for g, b, where in pairs:  # the same shape: the first part that differs, if any
        found = _first_change(g, b, where, depth + 1)
        if found is not None:
            return found
    return None


# What to_json_data writes of a datetime or time whose UTC offset has seconds: pydantic
# writes an offset to the minute (+05:00 for +05:00:30; LMT zones such as Europe/Amsterdam
# before 1937 have such offsets) and cannot parse one with seconds, so the value read back
# was another instant. It is written as isoformat does (+05:00:30) and read back by
# load_json with fromisoformat: the same instant and utcoffset.
_HAS_TEXT = (str, list, dict)
# a time of day with an offset as pydantic writes it, at the end of a string: the value
# is then walked to see whether the offset had seconds
_MINUTE_OFFSET = re.compile(r'\d\d:\d\d:\d\d(?:\.\d+)?[+-]\d\d:\d\d"')
_OFFSET_MOMENT = re.compile(
    r"(?:\d{4}-\d\d-\d\dT)?\d\d:\d\d:\d\d(?:\.\d{6})?[+-]\d\d:\d\d:\d\d(?:\.\d{6})?"
)
_MINUTE = timedelta(minutes=1)


def _exact_offsets(value: Any, tp: Any, data: Any) -> Any:
    """`data`, dumped from `value`, with each datetime and time whose UTC offset has
    seconds written in full: found where a python-mode dump, the same shape, holds one."""
    try:
        plain = _adapter(Any if tp is None else tp).dump_python(
            value, mode="python", by_alias=True, warnings=False
        )
    except Exception:  # the JSON-mode dump worked; nothing more to learn here
        return data
    return _with_offsets(plain, data)


def _with_offsets(plain: Any, data: Any) -> Any:
    if isinstance(plain, datetime | time):
        offset = plain.utcoffset()
        if offset is None or not offset % _MINUTE or data != to_jsonable_python(plain):
            return data  # another shape (a serializer of its own): left as pydantic wrote it
        # the base class's: a subclass (pendulum's) may write its own text
        return datetime.isoformat(plain) if isinstance(plain, datetime) else time.isoformat(plain)
    if type(data) is list and isinstance(plain, list | tuple) and len(plain) == len(data):
        return [_with_offsets(p, d) for p, d in zip(plain, data, strict=True)]
    if type(data) is dict and isinstance(plain, dict) and len(plain) == len(data):
        pairs = zip(plain.items(), data.items(), strict=True)
        return {_with_offsets(pk, dk): _with_offsets(pv, dv) for (pk, pv), (dk, dv) in pairs}
    return data


def _is_seconds_offset(value: Any) -> bool:
    return isinstance(value, str) and _OFFSET_MOMENT.fullmatch(value) is not None


def _read_offsets(data: Any, refused: set[str]) -> Any:
    """`data` with each datetime or time that `_with_offsets` wrote, among the texts
    pydantic `refused`, made one again."""
    if type(data) is list:
        return [_read_offsets(v, refused) for v in data]
    if type(data) is dict:
        return {_read_offsets(k, refused): _read_offsets(v, refused) for k, v in data.items()}
    if type(data) is not str or data not in refused:
        return data
    try:
        return (datetime if "T" in data else time).fromisoformat(data)
    except ValueError:  # no such date or time: a str, as written
        return data


def _find_unserialisable(value: Any, path: str) -> tuple[type, str]:
    """Walk `value` to the first part pydantic cannot dump; (type, JSON path)."""
    if value is None or isinstance(value, str | int | float | bool):
        return type(None), ""
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str | int | float | bool):
                return type(k), f"{path} (a key)"
            bad, where = _find_unserialisable(v, f"{path}.{k}")
            if where:
                return bad, where
        return type(None), ""
    if isinstance(value, list | tuple | set | frozenset):
        for i, v in enumerate(value):
            bad, where = _find_unserialisable(v, f"{path}[{i}]")
            if where:
                return bad, where
        return type(None), ""
    fields = _fields(value)
    if fields is not None:
        for name, v in fields:
            bad, where = _find_unserialisable(v, f"{path}.{name}")
            if where:
                return bad, where
        return type(None), ""
    try:
        to_jsonable_python(value)
    except Exception:
        return type(value), path
    return type(None), ""


def _check_depth(value: Any, what: str) -> None:
    """Refuse `value` if its containers nest deeper than MAX_DEPTH (a cycle nests forever).

    Iterative, so a value 10,000 levels deep costs no Python recursion.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, "$")]
    while stack:
        item, depth, path = stack.pop()
        children = _children(item, path)
        if children is None:
            continue
        if depth >= MAX_DEPTH:
            raise NotSerializableError(
                what,
                type(item),
                _short_path(path),
                problem=f"is nested more than {MAX_DEPTH} levels deep (or contains itself)",
                fix=_NESTED_FIX,
            )
        stack.extend((v, depth + 1, p) for v, p in reversed(children))


def _children(item: Any, path: str) -> list[tuple[Any, str]] | None:
    """The parts of a container, dataclass or model with their paths; None for a scalar."""
    if isinstance(item, Mapping):
        return [(v, f"{path}{_key_path(k)}") for k, v in item.items()]
    if isinstance(item, list | tuple | set | frozenset):
        return [(v, f"{path}[{i}]") for i, v in enumerate(item)]
    fields = _fields(item)
    return None if fields is None else [(v, f"{path}.{name}") for name, v in fields]


def _fields(value: Any) -> list[tuple[str, Any]] | None:
    """The fields of a dataclass or pydantic model instance, by name; None for anything
    else. Walked as containers are: a model or dataclass may hold itself, or a bad part."""
    if isinstance(value, BaseModel):
        return [(name, getattr(value, name, None)) for name in type(value).model_fields]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value)]
    return None


def _key_path(key: object) -> str:
    if isinstance(key, str) and key.isidentifier() and len(key) <= 40:
        return f".{key}"
    text = repr(key)
    return f"[{text if len(text) <= 40 else text[:37] + '...'}]"


def _short_path(path: str) -> str:
    return path if len(path) <= 120 else path[:60] + "..." + path[-57:]


def _first(data: Any, bad: Callable[[Any], bool]) -> tuple[Any, str] | None:
    """The first scalar or key of plain JSON `data` for which `bad` holds, and its path.

    A walk without paths first: the common answer is "none", and building a path
    string for every value cost more than the check itself."""
    if not _any(data, bad):
        return None
    stack: list[tuple[Any, str]] = [(data, "$")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for k in item:
                if bad(k):
                    return k, f"{path}{_key_path(k)} (the key)"
            stack.extend((v, f"{path}{_key_path(k)}") for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
        elif bad(item):
            return item, path
    return None


def _any(data: Any, bad: Callable[[Any], bool]) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if any(bad(k) for k in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif bad(item):
            return True
    return False


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value


def _has_surrogate(value: Any) -> bool:
    if not isinstance(value, str) or value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _too_big(value: Any, what: str) -> NotSerializableError:
    """The error for an int that a declared float cannot hold (pydantic's float() of it
    raised a bare `OverflowError`), with its path."""
    return NotSerializableError(
        what,
        int,
        _short_path(_locate(value, _too_big_for_float)),
        problem="is declared a float but is too large for one (beyond 1.8e308)",
        fix="Declare it an int, or store it as a string (and int() it back).",
    )


def _locate(value: Any, bad: Callable[[Any], bool]) -> str:
    """The path of the first part of `value` (through containers, dataclass and model
    fields) for which `bad` holds; "" if none does. Each part is walked once."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    seen: set[int] = set()
    while stack:
        item, path, depth = stack.pop()
        if bad(item):
            return path
        if depth >= MAX_DEPTH or id(item) in seen:
            continue
        seen.add(id(item))
        children = _children(item, path)
        stack.extend((v, p, depth + 1) for v, p in reversed(children or ()))
    return ""


def _too_big_for_float(value: Any) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _too_long_int(value: Any) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    limit = sys.get_int_max_str_digits()
    # bit_length * log10(2) is within one digit of the true count; str() would raise
    return limit > 0 and value.bit_length() * 0.30103 > limit - 1 and _str_fails(value)


def _str_fails(value: int) -> bool:
    try:
        str(value)
    except ValueError:
        return True
    return False


def _nul_error(what: str, value: Any, path: str) -> NotSerializableError:
    return NotSerializableError(
        what,
        type(value),
        _short_path(path),
        problem="contains a NUL character ('\\x00'), which PostgreSQL cannot store",
        fix="Remove it, or encode binary data (e.g. base64) before storing it.",
    )


def _refusal(data: Any, what: str) -> NotSerializableError:
    """The error for plain JSON `data` that json.dumps or UTF-8 refused: which part, and why."""
    found = _first(data, _not_finite)
    if found is not None:
        return NotSerializableError(
            what,
            float,
            _short_path(found[1]),
            problem=f"is {found[0]!r}, and JSON has no NaN or infinity",
            fix="Use a finite number, None, or a string such as 'inf'.",
        )
    found = _first(data, _too_long_int)
    if found is not None:
        limit = sys.get_int_max_str_digits()
        return NotSerializableError(
            what,
            int,
            _short_path(found[1]),
            problem=f"has more than {limit} digits, too many to store as a JSON number",
            fix="Store it as a string (and int() it back), or raise the limit with "
            "sys.set_int_max_str_digits().",
        )
    found = _first(data, _has_surrogate)
    if found is not None:
        bad = next(c for c in found[0] if 0xD800 <= ord(c) <= 0xDFFF)
        return NotSerializableError(
            what,
            str,
            _short_path(found[1]),
            problem=f"contains a lone surrogate ({bad!r}), which is not valid Unicode",
            fix="Decode the text with errors='replace' (or fix its source) so that it is "
            "valid UTF-8 before storing it.",
        )
    return NotSerializableError(
        what,
        type(data),
        problem="could not be written as JSON",
        fix="Return JSON data (dict, list, str, int, float, bool, None), a pydantic model, "
        "or a dataclass instead.",
    )


def type_name(tp: Any) -> str:
    """``list[Job] | None`` rather than ``list[_tether_3f2a.Job] | NoneType``."""
    text = tp.__name__ if isinstance(tp, type) else str(tp)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])", "", text).replace("NoneType", "None")
