"""tether: durable workflows for AI-agent harnesses.

The public API is what this module exports; everything else is internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._control import StepExited
from ._failure import ErrorRecord
from ._fanout import ForEachError, ForEachSummary, ItemResult, ItemStatus
from ._info import RunInfo, WaitInfo
from ._interceptors import Proceed, RunCall, StepCall, StepInterceptor
from ._workflow import MutexHandle, StepContext, Workflow
from .app import App, RunResult, WorkflowDef, open_workflow, run_workflow
from .clock import Clock, FakeClock, SystemClock
from .errors import (
    BatchesOutError,
    ChildRunError,
    IdempotencyConflictError,
    IdempotencyInProgressError,
    IncompatibleStoreError,
    InvalidArgumentError,
    LeaseConflictError,
    MutexTimeoutError,
    NewerRunError,
    NotSerializableError,
    RunAlreadyRunningError,
    RunCancelledError,
    RunFailedError,
    RunFinishedError,
    RunNotFoundError,
    StaleOwnerError,
    StepFailedError,
    StepTimeoutError,
    StoreError,
    StoreUnavailableError,
    TetherError,
    TokenCompletedError,
    TokenNotFoundError,
    WaitPayloadError,
    WaitTimeout,
    WebhookSignatureError,
    WorkflowIdConflictError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
    WorkflowVersionError,
)
from .record import (
    EventRecord,
    HeartbeatRecord,
    LeaseRecord,
    RunRecord,
    StageRecord,
    StepRecord,
)
from .retry import RetryPolicy
from .stages import (
    Failed,
    NotReady,
    Pipeline,
    PipelineError,
    Ready,
    Stage,
    StageContext,
    StageError,
    StageFailedError,
    StageTimeoutError,
    Suspend,
    batch_stage,
    stage,
)
from .store import Durability, EndReason, RunStatus, StepStatus, WaitKind, WaitStatus

if TYPE_CHECKING:
    from .server import AsyncClient, Client

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`Client` and `AsyncClient` on first use: they need the ``server`` extra
    (httpx), which `import tether` alone must not."""
    if name in ("Client", "AsyncClient"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module 'tether' has no attribute {name!r}")


__all__ = [
    "App",
    "AsyncClient",
    "BatchesOutError",
    "ChildRunError",
    "Client",
    "Clock",
    "Durability",
    "EndReason",
    "ErrorRecord",
    "EventRecord",
    "Failed",
    "FakeClock",
    "ForEachError",
    "ForEachSummary",
    "HeartbeatRecord",
    "IdempotencyConflictError",
    "IdempotencyInProgressError",
    "IncompatibleStoreError",
    "InvalidArgumentError",
    "ItemResult",
    "ItemStatus",
    "LeaseConflictError",
    "LeaseRecord",
    "MutexHandle",
    "MutexTimeoutError",
    "NewerRunError",
    "NotReady",
    "NotSerializableError",
    "Pipeline",
    "PipelineError",
    "Proceed",
    "Ready",
    "RetryPolicy",
    "RunAlreadyRunningError",
    "RunCall",
    "RunCancelledError",
    "RunFailedError",
    "RunFinishedError",
    "RunInfo",
    "RunNotFoundError",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "Stage",
    "StageContext",
    "StageError",
    "StageFailedError",
    "StageRecord",
    "StageTimeoutError",
    "StaleOwnerError",
    "StepCall",
    "StepContext",
    "StepExited",
    "StepFailedError",
    "StepInterceptor",
    "StepRecord",
    "StepStatus",
    "StepTimeoutError",
    "StoreError",
    "StoreUnavailableError",
    "Suspend",
    "SystemClock",
    "TetherError",
    "TokenCompletedError",
    "TokenNotFoundError",
    "WaitInfo",
    "WaitKind",
    "WaitPayloadError",
    "WaitStatus",
    "WaitTimeout",
    "WebhookSignatureError",
    "Workflow",
    "WorkflowDef",
    "WorkflowIdConflictError",
    "WorkflowNotFoundError",
    "WorkflowTimeoutError",
    "WorkflowVersionError",
    "__version__",
    "batch_stage",
    "open_workflow",
    "run_workflow",
    "stage",
]
