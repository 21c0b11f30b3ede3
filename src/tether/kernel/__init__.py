"""The command kernel, the outbox and the event-sink port."""

from __future__ import annotations

from ._kernel import Kernel
from .commands import (
    Command,
    CommandResult,
    JobExecute,
    JobExecuted,
    LeaseReapStale,
    OutboxFlush,
    OutboxFlushed,
    OutboxReplayDead,
    Reaped,
    Replayed,
    RunCancel,
    RunCancelled,
    RunCreate,
    RunCreated,
    RunReapStuck,
    RunRerunFrom,
    RunResume,
    RunResumed,
    TimersFire,
    Woken,
)
from .outbox import OutboxPolicy
from .sinks import (
    CallableSink,
    CollectingSink,
    EventSink,
    LoggingSink,
    OutboxEvent,
    WebhookSink,
    sign,
)

__all__ = [
    "CallableSink",
    "CollectingSink",
    "Command",
    "CommandResult",
    "EventSink",
    "JobExecute",
    "JobExecuted",
    "Kernel",
    "LeaseReapStale",
    "LoggingSink",
    "OutboxEvent",
    "OutboxFlush",
    "OutboxFlushed",
    "OutboxPolicy",
    "OutboxReplayDead",
    "Reaped",
    "Replayed",
    "RunCancel",
    "RunCancelled",
    "RunCreate",
    "RunCreated",
    "RunReapStuck",
    "RunRerunFrom",
    "RunResume",
    "RunResumed",
    "TimersFire",
    "WebhookSink",
    "Woken",
    "sign",
]
