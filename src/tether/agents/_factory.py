"""Adapters chosen by WORKFLOW.md: the tracker and the agent backend of a config."""

from __future__ import annotations

from ..ai import Anthropic, OpenAI, Providers
from ._config import WorkflowFile, tracker_secret
from ._errors import TrackerError, WorkflowFileError
from .backends import (
    AgentBackend,
    ApiBackend,
    ClaudeBackend,
    CodexBackend,
    CommandBackend,
    MockBackend,
)
from .trackers import FileTracker, GitHubTracker, LinearTracker, MemoryTracker, Tracker

__all__ = ["make_backend", "make_tracker"]


def make_tracker(wf: WorkflowFile) -> Tracker:
    t = wf.config.tracker
    if t.kind == "file":
        assert t.path is not None
        return FileTracker(t.path)
    if t.kind == "memory":
        return MemoryTracker()
    secret = tracker_secret(t)
    if secret is None:
        raise TrackerError(
            f"the {t.kind} tracker has no API key (tracker.api_key)", code="missing_tracker_secret"
        )
    if t.kind == "github":
        assert t.repo is not None
        states = [*t.active(), *t.terminal(), *([t.handoff_state] if t.handoff_state else [])]
        return GitHubTracker(
            t.repo,
            secret,
            endpoint=t.endpoint,
            required_labels=t.required_labels,
            states=states,
        )
    if t.kind == "linear":
        return LinearTracker(
            secret,
            project_slug=t.project_slug,
            team=t.team,
            endpoint=t.endpoint,
            assignee=t.assignee,
        )
    raise TrackerError(
        f"tracker.kind {t.kind!r} has no adapter (file, github, linear, memory)",
        code="unsupported_tracker_kind",
    )


def make_backend(wf: WorkflowFile, providers: Providers | None = None) -> AgentBackend:
    """The backend WORKFLOW.md names. The api backend calls models through `providers`
    (the App's ``ai=``), or else OpenAI and Anthropic configured from the environment."""
    a = wf.config.agent
    if a.backend == "api":
        assert a.model is not None  # checked when the file was read
        return ApiBackend(
            providers or Providers(openai=OpenAI(), anthropic=Anthropic()),
            a.model,
            max_tool_rounds=a.max_tool_rounds,
            command_timeout=a.command_timeout_ms / 1000,
            max_sessions=a.max_sessions,
        )
    if a.backend == "mock":
        return MockBackend([dict(x) for x in a.script if isinstance(x, dict)])
    if a.backend == "command":
        return CommandBackend(a.default_command())
    if a.backend == "claude":
        return ClaudeBackend(a.default_command())
    if a.backend == "codex":
        return CodexBackend(a.default_command())
    raise WorkflowFileError(
        f"agent.backend {a.backend!r} has no adapter in this build (api, claude, codex, command, mock)",
        code="invalid_config",
    )
