"""Errors at rest: one codec writes an exception as JSON and brings it back.

A failed run or step records ``{"type", "module", "message", "traceback"}``.
Asking a failed run for its result again raises the same exception type as
the first time: the class is found again by module and name and rebuilt with
the recorded message (without calling its ``__init__``, whose signature we
cannot know); where the class cannot be found, `RunFailedError` stands in.
"""

from __future__ import annotations

import importlib
import traceback
from typing import Any

from .errors import RunFailedError
from .serde import dump_json

__all__ = ["error_json", "revive_error"]


def error_json(exc: BaseException) -> str:
    """`exc` as the JSON text recorded on a run or step."""
    cls = type(exc)
    return dump_json(
        {
            "type": cls.__name__,
            "module": cls.__module__,
            "qualname": cls.__qualname__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        },
        what="error",
    )


def revive_error(workflow_id: str, error: dict[str, Any] | None) -> Exception:
    """The exception a failed run raised, rebuilt from its record."""
    error = error or {}
    message = str(error.get("message", ""))
    cls = _find_class(error.get("module"), error.get("qualname") or error.get("type"))
    if cls is not None:
        try:
            exc = cls.__new__(cls)
            exc.args = (message,)
            return exc
        except Exception:  # a class that refuses to be built this way
            pass
    return RunFailedError(workflow_id, str(error.get("type", "Exception")), message)


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
