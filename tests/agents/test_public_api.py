"""The agent layer's public surface is pinned."""

from __future__ import annotations

import tether.agents
import tether.agents.backends
import tether.agents.trackers


def test_exports() -> None:
    assert sorted(tether.agents.__all__) == sorted(
        [
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
    )
    assert sorted(tether.agents.trackers.__all__) == [
        "FileTracker",
        "GitHubTracker",
        "LinearTracker",
        "MemoryTracker",
        "Tracker",
        "parse_issues",
        "rate_limit_wait",
    ]
    assert (
        "UsageMeter" in tether.agents.backends.__all__
        and "MockBackend" in tether.agents.backends.__all__
    )
    for name in tether.agents.__all__:
        assert getattr(tether.agents, name) is not None
