"""Remote workflows: workflow code deployed apart from the orchestrator.

A tenant service registers workflows on a `TenantApp` and serves them with
`handler(tenant)` (an ASGI app). The orchestrator registers each with
``app.remote_workflow(name, url=..., secret=..., version=...)``; its runs are
ordinary tether runs, driven by invoking the tenant over the versioned wire
protocol of `_wire` (signed, deadlined, streamed step by step).

Needs the ``server`` extra (``pip install 'tether[server]'``).
"""

from __future__ import annotations

from . import _wire
from ._errors import (
    RemoteDeadlineError,
    RemoteError,
    RemoteInvocationLimitError,
    RemoteRefusedError,
    RemoteTooLargeError,
    RemoteUnavailableError,
    RemoteVersionError,
    RemoteWorkflowError,
)
from ._handler import handler
from ._orchestrator import RemoteSpec, remote_workflow
from ._tenant import TenantApp
from ._wire import *  # noqa: F403 (the wire protocol: its __all__ is ours)

__all__ = [
    *_wire.__all__,
    "RemoteDeadlineError",
    "RemoteError",
    "RemoteInvocationLimitError",
    "RemoteRefusedError",
    "RemoteSpec",
    "RemoteTooLargeError",
    "RemoteUnavailableError",
    "RemoteVersionError",
    "RemoteWorkflowError",
    "TenantApp",
    "handler",
    "remote_workflow",
]
