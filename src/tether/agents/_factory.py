"""Adapters chosen by WORKFLOW.md: the tracker and the agent backend of a config."""

from __future__ import annotations

from ._config import WorkflowFile
from ._errors import TrackerError, WorkflowFileError
from .backends import AgentBackend, ClaudeBackend, CodexBackend, CommandBackend, MockBackend
from .trackers import FileTracker, MemoryTracker, Tracker

__all__ = ["make_backend", "make_tracker"]


def make_tracker(wf: WorkflowFile) -> Tracker:
    t = wf.config.tracker
    if t.kind == "file":
        assert t.path is not None
        return FileTracker(t.path)
    if t.kind == "memory":
        return MemoryTracker()
    raise TrackerError(
        f"tracker.kind {t.kind!r} has no adapter in this build yet; use file or memory",
        code="unsupported_tracker_kind",
    )


def make_backend(wf: WorkflowFile) -> AgentBackend:
    a = wf.config.agent
    if a.backend == "mock":
        return MockBackend([dict(x) for x in a.script if isinstance(x, dict)])
    if a.backend == "command":
        return CommandBackend(a.default_command())
    if a.backend == "claude":
        return ClaudeBackend(a.default_command())
    if a.backend == "codex":
        return CodexBackend(a.default_command())
    raise WorkflowFileError(
        f"agent.backend {a.backend!r} has no adapter in this build (claude, codex, command, mock)",
        code="invalid_config",
    )
