"""The agent dispatcher: tracker issues to coding agents, in durable runs.

`Dispatcher(app, "WORKFLOW.md")` registers the ``agents.issue`` workflow on
`app`; `tick()` reconciles and dispatches once, `run_once()` also drives what
it dispatched, `serve()` keeps going. Every issue is one tether run
(``agent:<tracker>:<identifier>``): its attempts, retry timers and waits for a
person survive restarts. The parts are ports with adapters beside them:
`trackers` (file, github, linear, memory), `backends` (claude, codex, command, mock).
"""

from __future__ import annotations

try:  # the agents extra, said as such: a bare "No module named 'yaml'" named no fix
    import httpx  # noqa: F401
    import liquid  # noqa: F401
    import yaml  # noqa: F401
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f"tether.agents needs the agents extra, which is not installed (no module "
        f"{exc.name!r}): pip install 'tether[agents]'",
        name=exc.name,
    ) from exc

from . import _scheduler, backends, trackers
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
from ._scheduler import *  # noqa: F403 (the scheduler's rules and values: its __all__ is ours)
from ._workspace import WorkspaceManager, check_inside, workspace_key

__all__ = [
    *_scheduler.__all__,
    "ISSUE_WORKFLOW",
    "AgentError",
    "AgentsError",
    "Blocker",
    "Dispatcher",
    "Issue",
    "IssueStatus",
    "TemplateError",
    "TickReport",
    "TrackerError",
    "WorkflowConfig",
    "WorkflowFile",
    "WorkflowFileError",
    "WorkflowWatcher",
    "WorkspaceError",
    "WorkspaceManager",
    "backends",
    "check_inside",
    "issue_key",
    "load_workflow",
    "parse_workflow",
    "render_prompt",
    "trackers",
    "workspace_key",
]
