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
returned: equal by construction to every replay. A typed value whose JSON
does not decode back into its type (a ``dict[tuple[int, int], str]``: pydantic
writes the key ``(1, 2)`` as ``"1,2"``) is refused the same way, before it is
recorded, instead of failing on the way back.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import NotSerializableError, TetherError, explain_validation
from .serde import (
    check_type,
    dump_json,
    dump_plain,
    is_plain,
    load_json,
    read_back_change,
    type_name,
    validate,
)

__all__ = ["check_input", "dump_result", "load_result", "recorded_as", "recorded_result"]

log = logging.getLogger("tether")

_TAG = "$tether"  # marks a value recorded with its class
_PLAIN = ":"  # ... or plain JSON that has a key of that name itself
_SCALARS = (str, int, float, bool, type(None))
_INPUT_DECLARE = (
    "Annotate the workflow's input parameter (`input: {name}`) so it comes back as "
    "itself on every replay, or pass plain JSON (dict with str keys, list, str, int, "
    "float, bool, None)."
)
_DECLARE = (
    "Declare the return type (`-> {name}`, or pass result_type=) so it comes back as "
    "itself, or return plain JSON (dict with str keys, list, str, int, float, bool, None)."
)


def dump_result(value: Any, *, what: str, tp: Any = None) -> str:
    """The JSON text to record for `value`; refuses what would not replay the same."""
    return _encoded(value, what, tp, decode=False)[0]


def recorded_result(value: Any, *, what: str, tp: Any = None) -> tuple[str, Any]:
    """The JSON text to record for `value`, and the value every replay will return
    (`load_result` of that text), decoded once: the check that a typed value
    revives has decoded it already."""
    return _encoded(value, what, tp, decode=True)


def _encoded(value: Any, what: str, tp: Any, *, decode: bool) -> tuple[str, Any]:
    if inspect.isawaitable(value):
        _refuse_unawaited(value, what)
    if tp is not None:
        check_type(tp, what, " as its return annotation, or declare none and return plain JSON")
        text = dump_json(value, what=what, tp=tp)
        if tp is type(value) and tp in _SCALARS:  # a str as str: read back as is
            return text, _unsigned(value)
        return text, _revived(text, tp, value, what)
    if type(value) in _SCALARS:
        return dump_plain(value, what=what), _unsigned(value)
    if isinstance(value, BaseModel) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        return _with_class(value, what)
    _refuse_lossy(value, what, "$")  # what passes is what dump_plain takes
    if type(value) is dict and _TAG in value:  # the user's own key: kept as it is, not read
        text = f'{{"{_TAG}":"{_PLAIN}","value":{dump_plain(value, what=what)}}}'
    else:
        text = dump_plain(value, what=what)
    # a copy: what the function returned may change after it is recorded
    return text, load_result(text) if decode else None


def _unsigned(scalar: Any) -> Any:
    """A scalar as a replay reads it back: -0.0 is recorded 0.0 (`serde.dump_json`)."""
    return 0.0 if type(scalar) is float and scalar == 0.0 else scalar


def _refuse_unawaited(value: Any, what: str) -> None:
    """`return wf.step(...)` without the await: the step never ran, and the error said
    to declare the return type `-> coroutine`."""
    if inspect.iscoroutine(value):
        value.close()  # no "never awaited" warning on top of the error
    raise NotSerializableError(
        what,
        type(value),
        problem="was returned without being awaited, so what it stands for did not run",
        fix="Await it: `return await wf.step(...)` (or whatever call made it).",
    )


def _with_class(value: Any, what: str) -> tuple[str, Any]:
    """A model or dataclass recorded with its class, to be revived as that class."""
    cls = type(value)
    if "<locals>" in cls.__qualname__:
        raise NotSerializableError(
            what,
            cls,
            problem="is defined inside a function, so a replay cannot find its class",
            fix=_DECLARE.format(name=cls.__name__) + " Or define the class at module level.",
        )
    body = dump_json(value, what=what, tp=cls)
    ref = f"{cls.__module__}:{cls.__qualname__}"
    text = f'{{"{_TAG}":"{ref}","value":{body}}}'
    decoded = _revived(body, cls, value, what)
    if _find(ref) is not cls:  # read back as plain data: let load_result say so
        return text, load_result(text)
    return text, decoded


def load_result(text: str | None, tp: Any = None) -> Any:
    """A recorded result, as the first run returned it; as `tp` when given, one recorded
    with its class (by code that declared no type, a lambda) read as `tp` too: a step
    turned from a lambda into a function declaring that class was refused as "does not
    fit its declared type now" (and one declaring a dict got the record's wrapper)."""
    if tp is not None:
        data = load_json(text)
        if _tagged(data):  # recorded with its class (or marked plain): its value is the result
            try:
                return validate(tp, data["value"])
            except ValidationError:
                pass
        return validate(tp, data)
    data = load_json(text)
    if _tagged(data):
        if data[_TAG] == _PLAIN:
            return data["value"]
        cls = _find(data[_TAG])
        if cls is not None:
            return load_json(dump_json(data["value"], what="result"), cls)
        _unfound(data[_TAG])
        return data["value"]  # its class is gone: the data is all we have
    return data


def _tagged(data: Any) -> bool:
    """Whether `data` is a result recorded with its class (or marked plain)."""
    return (
        isinstance(data, dict)
        and len(data) == 2
        and isinstance(data.get(_TAG), str)
        and ("value" in data)
    )


_UNFOUND: set[str] = set()  # the classes `_unfound` has warned of in this process


def _unfound(ref: str) -> None:
    """Warn, once per class and process, that a result recorded with its class reads
    back as plain data here: a class of a script run as ``__main__``, read by ``tether
    run``, a worker or another script, came back a dict, and the code using it failed
    far from the cause (``'dict' object has no attribute ...``)."""
    if ref in _UNFOUND:
        return
    _UNFOUND.add(ref)
    module, _, name = ref.partition(":")
    where = (
        "a class of a script run as __main__ is found only by that script"
        if module == "__main__"
        else f"module {module!r} cannot be imported here, or no longer defines it"
    )
    log.warning(
        "a result recorded as a %s reads back as plain data in this process (%s): declare "
        "its type where it is read back (a step's return annotation or result_type=), "
        "or define the class in a module every process imports",
        name, where,
    )  # fmt: skip


def _revived(body: str, tp: Any, value: Any, what: str) -> Any:
    """`body`, the JSON of `value` as `tp`, read back as `tp`; refuses `value` if
    it does not validate back, or validates as another value (see
    `serde.read_back_change`)."""
    try:
        revived = load_json(body, tp)
    except ValidationError as exc:
        loc = exc.errors(include_url=False)[0]["loc"] if exc.error_count() else ()
        raise NotSerializableError(
            what,
            type(value),
            "$" + "".join(f"[{p!r}]" for p in loc),
            problem=f"is written as JSON that does not read back as {type_name(tp)} "
            f"({explain_validation(exc)})",
            fix="Declare a type whose JSON reads back (dict keys of str, int, an enum or "
            "a date; a list of pairs instead of a dict with tuple keys).",
        ) from None
    changed = read_back_change(tp, value, revived)
    if changed is not None:
        raise _read_back_as_other(what, tp, *changed)
    return revived


def _read_back_as_other(what: str, tp: Any, path: str, given: Any, back: Any) -> Exception:
    """The error for a value that `tp` reads back as another one: its first run would
    have gone on with what a replay reads, not with what the function returned."""
    return NotSerializableError(
        what,
        type(given),
        path,
        problem=f"is written as JSON that {type_name(tp)} reads back as "
        f"{type(back).__name__} {_short(back)}, not as the {_short(given)} returned",
        fix="Declare the type it has (not Any or object), or a union whose members "
        "read back apart: the narrower type first in "
        "Annotated[date | str, Field(union_mode='left_to_right')].",
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_input(value: Any, tp: Any, text: str, what: str) -> None:
    """Refuse a workflow input (`value`, recorded as `text`) that a replay of its run
    would read back as another value: every drive, the first included, is given the
    input as recorded, and a tuple (or a model under an unannotated parameter) came
    back a list (a dict) after a crash where the first drive had the tuple."""
    if tp is not None:
        _revived(text, tp, value, what)
        return
    if isinstance(value, BaseModel) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        raise NotSerializableError(
            what,
            type(value),
            "$",
            problem="would come back as a dict on replay",
            fix=_INPUT_DECLARE.format(name=type(value).__name__),
        )
    _refuse_lossy(value, what, "$", _INPUT_DECLARE)


def _refuse_lossy(value: Any, what: str, path: str, declare: str = _DECLARE) -> None:
    """Refuse the first part of `value` JSON would bring back changed, and a value
    nested deeper than JSON is stored (`serde.MAX_DEPTH`) or containing itself: what
    passes is the plain JSON `serde.dump_plain` takes.

    The usual answer, nothing to refuse, comes from `is_plain`, a walk that names no
    paths; only when it finds something is the value walked again to name the part."""
    if is_plain(value):
        return
    _refuse_changed(value, what, path, declare)
    dump_json(value, what=what)  # plain, but too deep or containing itself: refused there


def _refuse_changed(value: Any, what: str, path: str, declare: str) -> None:
    """Walk plain containers; refuse the first part JSON would bring back changed.

    A container met again is not walked again: it passed the first time (or, inside
    itself, is being walked), and a value containing itself ends."""
    stack: list[tuple[Any, str]] = [(value, path)]
    walked: set[int] = set()
    while stack:
        item, where = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is list or kind is dict:
            if id(item) in walked:
                continue
            walked.add(id(item))
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
                        fix=declare.format(name=f"dict[{type(k).__name__}, ...]"),
                    )
                stack.append((v, f"{where}.{k}"))
            continue
        raise NotSerializableError(
            what,
            kind,
            where,
            problem="would come back as a different type on replay",
            fix=declare.format(name=_hint(value)),
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


def recorded_as(text: str | None, tp: Any, *, what: str, since: str, way_out: str) -> Any:
    """A recorded result (a step's, a run's, a child run's) as `tp`, its type declared
    now; when the code changed since and it no longer fits, an error naming `what`
    recorded it, what does not fit, and `way_out`, rather than pydantic's bare one."""
    try:
        return load_result(text, tp)
    except ValidationError as exc:
        raise TetherError(
            f"{what} recorded a result that does not fit its declared type now: "
            f"{explain_validation(exc)}. The code changed since {since}: {way_out}"
        ) from None
