"""Whether one model can feed another, decided when a pipeline is built.

At run time a stage gets the earlier output dumped to JSON data and validated
by its input model (pydantic's lax mode: ``"3"`` becomes an int, an int a
float). So a pipeline is refused only for what can never work: a required
field the producer lacks, or a field both models declare whose types never
meet, judged by the JSON shape the producer's type dumps to (a number where a
list is wanted, a string where a model is wanted), inside lists, dicts and
nested models too. Whatever cannot be decided here (enums, literals, dates,
constrained or custom types, aliased fields, most generics) is accepted and
left to run-time validation: refusing a pipeline that would run is worse than
finding a bad one a stage later.
"""

from __future__ import annotations

import collections
import collections.abc as abc
import types
from collections.abc import Iterable
from typing import Annotated, Any, TypeGuard, Union, get_args, get_origin

from pydantic import AliasChoices, AliasPath, BaseModel
from pydantic.fields import FieldInfo

__all__ = ["accepts", "mapping_misfit", "misfit", "type_name"]

_ARRAYS = (list, tuple, set, frozenset, collections.deque)
_OBJECTS = (dict, abc.Mapping, abc.MutableMapping)
_NUMBERISH = frozenset({"number", "string", "bool"})  # what int, float and bool take
_TAKES: dict[Any, frozenset[str]] = {
    str: frozenset({"string"}),
    int: _NUMBERISH,
    float: _NUMBERISH,
    bool: _NUMBERISH,
    type(None): frozenset({"null"}),
    **{t: frozenset({"array"}) for t in _ARRAYS},
    **{t: frozenset({"object"}) for t in _OBJECTS},
}

Seen = set[tuple[type[BaseModel], type[BaseModel]]]


def type_name(tp: Any) -> str:
    """`tp` as written in code (``Text``, ``list[str]``, ``int | None``)."""
    return (
        tp.__name__
        if isinstance(tp, type) and not get_args(tp)
        else repr(tp).replace("typing.", "")
    )


def misfit(
    source: type[BaseModel], target: type[BaseModel], seen: Seen | None = None
) -> str | None:
    """Why a `source` value cannot validate as `target` (None if it may): a required
    field `source` lacks, or a field whose types never meet."""
    seen = set() if seen is None else seen
    if issubclass(source, target) or (source, target) in seen:
        return None
    seen.add((source, target))
    have = source.model_fields
    missing = _unread(target, {k for n, f in have.items() for k in (n, _dumped_key(n, f))})
    if missing:
        return f"{source.__name__} lacks the required fields {missing}"
    if target.model_config.get("coerce_numbers_to_str"):
        return None  # a string field takes numbers too: not worth modelling
    for name, want in target.model_fields.items():
        got = have.get(name)
        if got is None or _aliased(got) or _aliased(want):
            continue  # absent and optional, or read under another key: cannot tell
        if not accepts(want.annotation, got.annotation, seen):
            return (
                f"field {name!r} is {type_name(got.annotation)} in {source.__name__}, but "
                f"{target.__name__} wants {type_name(want.annotation)}"
            )
    return None


def mapping_misfit(outputs: dict[str, type[BaseModel]], target: type[BaseModel]) -> str | None:
    """Why `target` cannot read a parallel group's `outputs` (by stage id; None if it
    can): its required fields must be stage ids of the group, each declared as a type
    taking that stage's output."""
    fields = target.model_fields
    missing = _unread(target, outputs)
    if missing:
        return f"{target.__name__} requires fields {missing}, which are not stage ids of the group"
    for name, field in fields.items():
        tp = field.annotation
        read = [k for k, n in _keys(target).items() if n == name and k in outputs]
        for sid in read:
            if not accepts(tp, outputs[sid]):
                why = misfit(outputs[sid], tp) if _is_model(tp) else None
                return (
                    f"field {name!r} of {target.__name__} wants {type_name(tp)}, but stage "
                    f"{sid!r} outputs {outputs[sid].__name__}" + (f" ({why})" if why else "")
                )
    return None


def _aliased(f: FieldInfo) -> bool:
    return bool(f.alias or f.validation_alias or f.serialization_alias)


def _dumped_key(name: str, f: FieldInfo) -> str:
    """The key a producer's field is written under (tether dumps by alias)."""
    return f.serialization_alias or f.alias or name


def _aliases(field: FieldInfo) -> list[str]:
    """The keys a field is read under besides its name (its validation alias or alias;
    of a path into a nested value, its first key)."""
    alias = field.validation_alias if field.validation_alias is not None else field.alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
    keys = []
    for c in choices:
        first = c.path[0] if isinstance(c, AliasPath) else c
        if isinstance(first, str):
            keys.append(first)
    return keys


def _keys(model: type[BaseModel]) -> dict[str, str]:
    """The keys `model` reads, each with the field it fills: a field's aliases and, when
    it has none or the model reads fields by name too, its name."""
    conf = model.model_config
    by_name = bool(conf.get("validate_by_name") or conf.get("populate_by_name"))
    by_alias = conf.get("validate_by_alias", True) is not False
    keys: dict[str, str] = {}
    for name, field in model.model_fields.items():
        aliases = _aliases(field) if by_alias else []
        keys.update(dict.fromkeys(aliases, name))
        if by_name or not aliases:
            keys[name] = name
    return keys


def _unread(model: type[BaseModel], given: Iterable[str]) -> list[str]:
    """The required fields of `model` that none of the keys `given` fills. A stage id
    with a '-' is no Python name: a model reads it with ``Field(alias="sum-up")``, and
    was refused as lacking the field ``sum_up``, though the run validates by alias."""
    keys = set(given)
    filled = {field for key, field in _keys(model).items() if key in keys}
    return [n for n, f in model.model_fields.items() if f.is_required() and n not in filled]


def accepts(target: Any, source: Any, seen: Seen | None = None) -> bool:
    """Whether some value of type `source`, dumped to JSON data, may validate as
    `target`; True whenever that cannot be decided."""
    target, source = _bare(target), _bare(source)
    if target is Any or source is Any or target == source:
        return True
    if _is_union(target):
        return any(accepts(arm, source, seen) for arm in get_args(target))
    if _is_union(source):  # refused only if no value of it fits
        return any(accepts(target, arm, seen) for arm in get_args(source))
    if isinstance(source, type) and isinstance(target, type) and issubclass(source, target):
        return True
    takes, shape = _takes(target), _shape(source)
    if takes is None or shape is None:
        return True
    if shape not in takes:
        return False
    return _inner_accepts(target, source, shape, seen)


def _inner_accepts(target: Any, source: Any, shape: str, seen: Seen | None) -> bool:
    """Two types of the same JSON shape: compare their models, items or values."""
    if _is_model(target) and _is_model(source):
        return misfit(source, target, seen) is None
    t_args, s_args = get_args(target), get_args(source)
    if shape == "array":
        t_item, s_item = _item(t_args), _item(s_args)
        return t_item is None or s_item is None or accepts(t_item, s_item, seen)
    if shape == "object" and len(t_args) == 2 and len(s_args) == 2:
        return accepts(t_args[1], s_args[1], seen)  # keys are strings in JSON anyway
    return True


def _item(args: tuple[Any, ...]) -> Any:
    """The item type of an array type's arguments (``list[int]``, ``tuple[int, ...]``),
    None for a bare or fixed-length one."""
    if len(args) == 1:
        return args[0]
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _bare(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_model(tp: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _takes(tp: Any) -> frozenset[str] | None:
    """The JSON shapes a consumer's type validates in lax mode (None: cannot tell)."""
    if _is_model(tp):
        return frozenset({"object"})
    origin = get_origin(tp) or tp
    try:
        return _TAKES.get(origin)
    except TypeError:  # an unhashable annotation
        return None


def _shape(tp: Any) -> str | None:
    """The JSON shape a producer's type dumps to (None: cannot tell)."""
    origin = get_origin(tp) or tp
    if not isinstance(origin, type):
        return None
    if origin is type(None):
        return "null"
    for shape, kinds in (("bool", (bool,)), ("number", (int, float)), ("string", (str,)),
                         ("array", _ARRAYS), ("object", (*_OBJECTS, BaseModel))):  # fmt: skip
        if issubclass(origin, kinds):
            return shape
    return None
