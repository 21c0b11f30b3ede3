"""Results that come back the same: the first run returns what a replay returns.

A step's result (and a workflow's) is stored as JSON. To keep the promise
that a replay answers exactly what the first run got, type included, a
result is either

- typed: by the declared return type or a ``result_type=``; dumped and
  validated back through that type (a `date`, a tuple, a `set[int]`, a
  ``dict[int, str]`` all come back as themselves);
- a pydantic model or a dataclass at the top, untyped: recorded with its
  class and revived as that class;
- plain JSON: dicts with string keys, lists, str, int, finite float, bool,
  None.

Anything else (a tuple or set, bytes, a date, an enum, a dict with other
keys, a generator, a model nested inside plain containers) would come back
different, so it is refused on the first run with `NotSerializableError`
naming its type and path, and how to declare it. The first run then returns
the value decoded from what was written, not the object the function
returned: equal by construction to every replay.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from pydantic import BaseModel

from .errors import NotSerializableError
from .serde import dump_json, load_json

__all__ = ["dump_result", "load_result"]

_TAG = "$tether"  # marks a value recorded with its class
_PLAIN = ":"  # ... or plain JSON that has a key of that name itself
_SCALARS = (str, int, float, bool, type(None))
_DECLARE = (
    "Declare the return type (`-> {name}`, or pass result_type=) so it comes back as "
    "itself, or return plain JSON (dict with str keys, list, str, int, float, bool, None)."
)


def dump_result(value: Any, *, what: str, tp: Any = None) -> str:
    """The JSON text to record for `value`; refuses what would not replay the same."""
    if tp is not None:
        return dump_json(value, what=what, tp=tp)
    if type(value) in _SCALARS:
        return dump_json(value, what=what)
    if isinstance(value, BaseModel) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        cls = type(value)
        if "<locals>" in cls.__qualname__:
            raise NotSerializableError(
                what,
                cls,
                problem="is defined inside a function, so a replay cannot find its class",
                fix=_DECLARE.format(name=cls.__name__) + " Or define the class at module level.",
            )
        body = dump_json(value, what=what, tp=cls)
        return f'{{"{_TAG}":"{cls.__module__}:{cls.__qualname__}","value":{body}}}'
    _refuse_lossy(value, what, "$")
    if type(value) is dict and _TAG in value:  # the user's own key: kept as it is, not read
        return f'{{"{_TAG}":"{_PLAIN}","value":{dump_json(value, what=what)}}}'
    return dump_json(value, what=what)


def load_result(text: str | None, tp: Any = None) -> Any:
    """A recorded result, as the first run returned it."""
    if tp is not None:
        return load_json(text, tp)
    data = load_json(text)
    if isinstance(data, dict) and len(data) == 2 and isinstance(data.get(_TAG), str):
        if data[_TAG] == _PLAIN:
            return data["value"]
        cls = _find(data[_TAG])
        if cls is not None:
            return load_json(dump_json(data["value"], what="result"), cls)
        return data["value"]  # its class is gone: the data is all we have
    return data


def _refuse_lossy(value: Any, what: str, path: str) -> None:
    """Walk plain containers; refuse the first part JSON would bring back changed."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is list:
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
            continue
        if kind is dict:
            for k, v in item.items():
                if type(k) is not str:
                    raise NotSerializableError(
                        what,
                        type(k),
                        f"{where} (a key)",
                        problem="is a dict key that JSON turns into a string",
                        fix=_DECLARE.format(name=f"dict[{type(k).__name__}, ...]"),
                    )
                stack.append((v, f"{where}.{k}"))
            continue
        raise NotSerializableError(
            what,
            kind,
            where,
            problem="would come back as a different type on replay",
            fix=_DECLARE.format(name=_hint(value)),
        )


def _hint(value: Any, depth: int = 0) -> str:
    """The annotation to declare for `value` as a whole (``list[M]``, not ``M``)."""
    if depth > 3:
        return "..."
    kind = type(value)
    if kind is list:
        return f"list[{_hint(value[0], depth + 1) if value else '...'}]"
    if kind is dict:
        first = next(iter(value.items()), None)
        if first is None:
            return "dict[...]"
        return f"dict[{type(first[0]).__name__}, {_hint(first[1], depth + 1)}]"
    if kind is tuple:
        return "tuple[...]"
    if isinstance(value, set | frozenset):
        return "set[...]"
    return kind.__name__  # a NamedTuple or another class: itself


def _find(ref: str) -> type | None:
    module, _, qualname = ref.partition(":")
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:
        return None
    return found if isinstance(found, type) else None
