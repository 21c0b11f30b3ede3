"""The agent dispatcher: tracker issues to coding agents, in durable runs.

`Dispatcher(app, "WORKFLOW.md")` registers the ``agents.issue`` workflow on
`app`; `tick()` reconciles and dispatches once, `run_once()` also drives what
it dispatched, `serve()` keeps going. Every issue is one tether run
(``agent:<tracker>:<identifier>``): its attempts, retry timers and waits for a
person survive restarts. The parts are ports with adapters beside them:
`trackers` (file, github, linear, memory), `backends` (claude, codex, command, mock).
"""

from __future__ import annotations

from . import backends, trackers
from ._config import (
    WorkflowConfig,
    WorkflowFile,
    WorkflowWatcher,
    load_workflow,
    parse_workflow,
)
from ._daemon import Dispatcher, IssueStatus, TickReport
from ._errors import (
    AgentError,
    AgentsError,
    TemplateError,
    TrackerError,
    WorkflowFileError,
    WorkspaceError,
)
from ._issue import Blocker, Issue
from ._prompt import render_prompt
from ._run import ISSUE_WORKFLOW, issue_key
from ._scheduler import (
    AgentUpdate,
    CleanWorkspace,
    Dispatch,
    Log,
    Release,
    RetryDue,
    RetryEntry,
    RunningEntry,
    ScheduleRetry,
    SchedulerState,
    SetCooldown,
    Stop,
    Tick,
    WaitForPerson,
    WorkerExit,
    apply_event,
    available_slots,
    is_eligible,
    is_stalled,
    reconcile_issue,
    retry_delay,
    sort_candidates,
    why_not,
)
from ._workspace import WorkspaceManager, check_inside, workspace_key

__all__ = [
    "ISSUE_WORKFLOW",
    "AgentError",
    "AgentUpdate",
    "AgentsError",
    "Blocker",
    "CleanWorkspace",
    "Dispatch",
    "Dispatcher",
    "Issue",
    "IssueStatus",
    "Log",
    "Release",
    "RetryDue",
    "RetryEntry",
    "RunningEntry",
    "ScheduleRetry",
    "SchedulerState",
    "SetCooldown",
    "Stop",
    "TemplateError",
    "Tick",
    "TickReport",
    "TrackerError",
    "WaitForPerson",
    "WorkerExit",
    "WorkflowConfig",
    "WorkflowFile",
    "WorkflowFileError",
    "WorkflowWatcher",
    "WorkspaceError",
    "WorkspaceManager",
    "apply_event",
    "available_slots",
    "backends",
    "check_inside",
    "is_eligible",
    "is_stalled",
    "issue_key",
    "load_workflow",
    "parse_workflow",
    "reconcile_issue",
    "render_prompt",
    "retry_delay",
    "sort_candidates",
    "trackers",
    "why_not",
    "workspace_key",
]
