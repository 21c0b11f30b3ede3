"""Remote workflows: workflow code deployed apart from the orchestrator.

A tenant service registers workflows on a `TenantApp` and serves them with
`handler(tenant)` (an ASGI app). The orchestrator registers each with
``app.remote_workflow(name, url=..., secret=..., version=...)``; its runs are
ordinary tether runs, driven by invoking the tenant over the versioned wire
protocol of `_wire` (signed, deadlined, streamed step by step).

Needs the ``server`` extra (``pip install 'tether[server]'``).
"""

from __future__ import annotations

from ._errors import (
    RemoteDeadlineError,
    RemoteError,
    RemoteInvocationLimitError,
    RemoteRefusedError,
    RemoteUnavailableError,
    RemoteVersionError,
    RemoteWorkflowError,
)
from ._handler import handler
from ._orchestrator import RemoteSpec
from ._tenant import TenantApp
from ._wire import (
    PROTOCOL_HEADER,
    PROTOCOL_VERSION,
    SUPPORTED_PROTOCOLS,
    Answer,
    Invocation,
    Journal,
    JournalStep,
    JournalWait,
    Line,
    RunMeta,
    TenantMeta,
    Waitpoint,
)

__all__ = [
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOLS",
    "Answer",
    "Invocation",
    "Journal",
    "JournalStep",
    "JournalWait",
    "Line",
    "RemoteDeadlineError",
    "RemoteError",
    "RemoteInvocationLimitError",
    "RemoteRefusedError",
    "RemoteSpec",
    "RemoteUnavailableError",
    "RemoteVersionError",
    "RemoteWorkflowError",
    "RunMeta",
    "TenantApp",
    "TenantMeta",
    "Waitpoint",
    "handler",
]
