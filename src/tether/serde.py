"""JSON at rest, typed on the way out.

Values are dumped through pydantic (so models, dataclasses, datetimes and
enums become JSON) and, when the caller knows the type, validated back into
it. Nothing is pickled. A value that cannot be stored raises
`NotSerializableError` naming what was being stored and the offending type,
before anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .errors import NotSerializableError

__all__ = ["dump_json", "load_json", "return_type_of", "to_json_data"]

_NO_TYPE: Any = object()


@functools.lru_cache(maxsize=1024)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def return_type_of(fn: Callable[..., Any]) -> Any:
    """The declared return type of `fn`, or None when it declares none usable."""
    try:
        return _return_type_cached(fn)
    except TypeError:  # unhashable callable
        return _return_type(fn)


@functools.lru_cache(maxsize=4096)
def _return_type_cached(fn: Callable[..., Any]) -> Any:
    return _return_type(fn)


def _return_type(fn: Callable[..., Any]) -> Any:
    target = fn
    if isinstance(fn, functools.partial):
        target = fn.func
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        return None
    tp = hints.get("return", _NO_TYPE)
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
    try:
        if tp is not None:
            data = _adapter(tp).dump_python(value, mode="json")
        else:
            data = to_jsonable_python(value)
    except PydanticSerializationError:
        bad, path = _find_unserialisable(value, "$")
        raise NotSerializableError(what, bad, path) from None
    except (TypeError, ValueError) as exc:
        bad, path = _find_unserialisable(value, "$")
        if bad is type(None):
            raise NotSerializableError(what, type(value)) from exc
        raise NotSerializableError(what, bad, path) from None
    return data


def dump_json(value: Any, *, what: str, tp: Any = None) -> str:
    """Serialise `value` to a JSON string, or raise `NotSerializableError`."""
    data = to_json_data(value, what=what, tp=tp)
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        _, path = _find_non_finite(data, "$")
        raise NotSerializableError(what, float, path) from None


def load_json(text: str | None, tp: Any = None) -> Any:
    """Parse stored JSON; validate into `tp` when given."""
    if text is None:
        return None
    data = json.loads(text)
    if tp is None:
        return data
    return _adapter(tp).validate_python(data)


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
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            bad, where = _find_unserialisable(getattr(value, f.name), f"{path}.{f.name}")
            if where:
                return bad, where
        return type(None), ""
    try:
        to_jsonable_python(value)
    except Exception:
        return type(value), path
    return type(None), ""


def _find_non_finite(data: Any, path: str) -> tuple[type, str]:
    if isinstance(data, float) and not math.isfinite(data):
        return float, path
    if isinstance(data, dict):
        for k, v in data.items():
            bad, where = _find_non_finite(v, f"{path}.{k}")
            if where:
                return bad, where
    if isinstance(data, list):
        for i, v in enumerate(data):
            bad, where = _find_non_finite(v, f"{path}[{i}]")
            if where:
                return bad, where
    return type(None), ""
