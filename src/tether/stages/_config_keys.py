"""Which key of a stage's config its model would drop without a word.

Pydantic ignores a key a model does not take (its default `extra`): a misspelt
``max_len`` ran with the default ``max_length``. So is one inside a nested
model (``{"ai": {"temprature": 0.1}}``), and a field's own name when the field
is read under an alias (``max_len`` for ``Field(alias="maxLength")``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, RootModel

from ._chain import _ARRAYS, _OBJECTS, _aliases, _bare, _is_model, _is_union, _item, _keys
from ._errors import close_to

__all__ = ["DroppedKey", "dropped_key"]


@dataclass(frozen=True)
class DroppedKey:
    """A key `model` would drop, at `path` (``ai.temprature``, ``tiers[0].modle``)."""

    path: str
    model: type[BaseModel]
    takes: list[str]  # the keys the model does take
    hint: str  # "; did you mean 'x'?" or "" when nothing is close

    def __str__(self) -> str:
        fields = ", ".join(self.takes) or "none"
        return f"no field {self.path!r} ({self.model.__name__}'s fields: {fields}){self.hint}"


def dropped_key(model: type[BaseModel], value: Any, path: str = "") -> DroppedKey | None:
    """The first key of `value` (config data for `model`) that `model` would drop, at any
    depth; None when there is none, or a model says what to do with extra keys
    (``ConfigDict(extra=...)``), or is a `RootModel` (whose keys are its data's)."""
    if not isinstance(value, Mapping) or model.model_config.get("extra"):
        return None
    if issubclass(model, RootModel):
        return _within(model.model_fields["root"].annotation, value, path.removesuffix("."))
    keys = _keys(model)
    for key in value:
        if key not in keys:
            return DroppedKey(f"{path}{key}", model, sorted(keys), _hint(model, str(key), keys))
    for key, item in value.items():
        found = _within(model.model_fields[keys[key]].annotation, item, f"{path}{key}")
        if found is not None:
            return found
    return None


def _within(tp: Any, value: Any, path: str) -> DroppedKey | None:
    """A dropped key inside `value` of a field typed `tp`: a model, or a list or dict of
    them, optional or not; None for what cannot be told (a union of two models)."""
    tp = _bare(tp)
    if _is_union(tp):
        arms = [a for a in get_args(tp) if _bare(a) is not type(None)]
        if len(arms) != 1:
            return None
        tp = _bare(arms[0])
    if _is_model(tp):
        return dropped_key(tp, value, f"{path}.")
    origin, args = get_origin(tp), get_args(tp)
    if origin in _ARRAYS and isinstance(value, Sequence) and not isinstance(value, str):
        item = _item(args)
        found = (_within(item, v, f"{path}[{i}]") for i, v in enumerate(value))
        return next((f for f in found if f is not None), None) if item is not None else None
    if origin in _OBJECTS and isinstance(value, Mapping) and len(args) == 2:
        found = (_within(args[1], v, f"{path}.{k}") for k, v in value.items())
        return next((f for f in found if f is not None), None)
    return None


def _hint(model: type[BaseModel], key: str, keys: dict[str, str]) -> str:
    field = model.model_fields.get(key)
    if field is not None:  # its name, where only its alias is read
        return f"; the field {key!r} is read as {_aliases(field)[0]!r}"
    close = close_to(key, sorted(keys))
    return f"; did you mean {close!r}?" if close is not None else ""
