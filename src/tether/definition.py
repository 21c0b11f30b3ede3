"""Workflow definitions and run results."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import InvalidArgumentError, WorkflowVersionError
from .record import RunRecord
from .store import RunRow, RunStatus

__all__ = ["RunResult", "WorkflowDef"]

T = TypeVar("T")
DEF_ATTR = "__tether_workflow__"


def _positional(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    return [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


@dataclass(frozen=True)
class WorkflowDef:
    """A workflow definition: a function registered under a name and a version.

    `compatible` lists older versions whose runs this code may resume;
    `timeout` bounds the seconds a run spends executing (parked time excluded).
    """

    name: str
    version: str | None
    fn: Callable[..., Awaitable[Any]]
    compatible: tuple[str, ...] = ()
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not inspect.iscoroutinefunction(self.fn):
            raise InvalidArgumentError(
                f"workflow {getattr(self.fn, '__qualname__', self.fn)!r} must be an `async def` "
                "function taking a tether.Workflow first"
            )
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or self.timeout <= 0
        ):
            raise InvalidArgumentError(f"timeout must be seconds > 0, got {self.timeout!r}")

    @property
    def takes_input(self) -> bool:
        return len(_positional(self.fn)) >= 2

    @property
    def input_required(self) -> bool:
        params = _positional(self.fn)
        return len(params) >= 2 and params[1].default is inspect.Parameter.empty

    @property
    def input_type(self) -> Any:
        params = _positional(self.fn)
        if len(params) < 2:
            return None
        try:
            hints = typing.get_type_hints(self.fn)
        except Exception:
            return None
        return hints.get(params[1].name)

    def check_version(self, run: RunRow) -> None:
        """Refuse to resume `run` if it started under an incompatible version."""
        recorded = run.workflow_version
        if recorded == self.version or recorded in self.compatible:
            return
        raise WorkflowVersionError(run.workflow_id, recorded, self.version)

    @classmethod
    def make(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        version: str | None = None,
        compatible: Iterable[str] = (),
        timeout: float | None = None,
    ) -> WorkflowDef:
        if isinstance(compatible, str):
            compatible = (compatible,)
        return cls(name or fn.__qualname__, version, fn, tuple(compatible), timeout)

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> WorkflowDef:
        """The definition attached by ``@app.workflow``, or one derived from `fn`."""
        found = getattr(fn, DEF_ATTR, None)
        if isinstance(found, WorkflowDef):
            return found
        if not callable(fn):
            raise InvalidArgumentError(f"a workflow must be an async function, got {fn!r}")
        return cls.make(fn)


@dataclass(frozen=True)
class RunResult(Generic[T]):
    """What a run returned (None unless completed), and its record after the call."""

    value: T
    record: RunRecord

    @property
    def workflow_id(self) -> str:
        return self.record.workflow_id

    @property
    def status(self) -> RunStatus:
        return self.record.status
