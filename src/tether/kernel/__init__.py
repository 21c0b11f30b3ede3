"""The command kernel, the outbox and the event-sink port."""

from __future__ import annotations

from . import _commands
from ._commands import *  # noqa: F403 (every command and result: its __all__ is ours)
from ._kernel import Kernel, new_run_id
from ._outbox import OutboxPolicy
from ._ports import RunHost, WorkflowRegistry
from ._publish import publish_outbox
from ._sinks import (
    CallableSink,
    CollectingSink,
    EventSink,
    LoggingSink,
    OutboxEvent,
    WebhookSink,
    sign,
)
from ._verify import check_signed, verify

__all__ = [
    *_commands.__all__,
    "CallableSink",
    "CollectingSink",
    "EventSink",
    "Kernel",
    "LoggingSink",
    "OutboxEvent",
    "OutboxPolicy",
    "RunHost",
    "WebhookSink",
    "WorkflowRegistry",
    "check_signed",
    "new_run_id",
    "publish_outbox",
    "sign",
    "verify",
]
