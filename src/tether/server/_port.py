"""What the server needs of the App it serves: a port, so that the server depends on
the App's shape and not on `tether.app` (which imports the server for `App.asgi`).
`tether.App` fits it; so does anything with the same async API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .._info import RunInfo, WaitInfo
from ..blobs import BlobStore
from ..clock import Clock
from ..definition import WorkflowDef
from ..kernel import Kernel
from ..record import RunRecord
from ..store import AICallRow, AIUsageRow, QueueLimit, Store

__all__ = ["ServedApp"]


class ServedApp(Protocol):
    store: Store
    blobs: BlobStore
    clock: Clock
    kernel: Kernel

    @property
    def queue_limits(self) -> dict[str, QueueLimit]: ...

    def get_workflow(self, name: str) -> WorkflowDef: ...

    # run creation and usage take the App's keyword options, which the routes pass
    # through from validated bodies: typed where the App declares them, not again here
    @property
    def astart(self) -> Callable[..., Awaitable[str]]: ...

    @property
    def asubmit(self) -> Callable[..., Awaitable[str]]: ...

    async def aget_run(self, workflow_id: str) -> RunInfo: ...

    async def aget_record(self, workflow_id: str) -> RunRecord: ...

    async def alist_waits(self, workflow_id: str) -> list[WaitInfo]: ...

    async def acancel(
        self,
        workflow_id: str,
        reason: str | None = None,
        *,
        compensate: bool = False,
        abandon_batches: bool = False,
    ) -> list[str]: ...

    async def asignal(self, workflow_id: str, name: str, payload: Any = None) -> bool: ...

    async def asend_event(self, event_type: str, payload: Any = None) -> list[str]: ...

    async def acomplete_token(self, token_id: str, payload: Any = None) -> str: ...

    @property
    def ausage(self) -> Callable[..., Awaitable[list[AIUsageRow]]]: ...

    async def alist_ai_calls(
        self, workflow_id: str, *, children: bool = False
    ) -> list[AICallRow]: ...

    async def aclose(self) -> None: ...

    async def ahost_chores(self, *, every: float = 1.0) -> None: ...

    async def adrivers(self, workflow_name: str, queue: str | None = None) -> list[str]: ...
