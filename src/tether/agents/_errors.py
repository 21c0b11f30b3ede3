"""The agent layer's errors. Each carries a `code` (Symphony's error categories,
so logs and the status API speak the reference's words) and says how to fix it.

The tree::

    TetherError
    └── AgentsError                      code: what went wrong, in one word
        ├── IssueNotFoundError           no run of that issue (a RunNotFoundError too)
        ├── WorkflowFileError            WORKFLOW.md missing, unparsable or invalid
        ├── TemplateError                the prompt template does not parse or render
        ├── WorkspaceError               a path outside the root, a failed hook
        ├── TrackerError                 the tracker refused or failed a request
        └── AgentError                   the agent backend could not run a turn
"""

from __future__ import annotations

import logging
import math

from ..errors import RunNotFoundError, TetherError

__all__ = [
    "AgentError",
    "AgentsError",
    "IssueNotFoundError",
    "TemplateError",
    "TrackerError",
    "WorkflowFileError",
    "WorkspaceError",
]


class AgentsError(TetherError):
    """An error of the agent dispatcher; `code` names its category."""

    code = "agents_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class IssueNotFoundError(AgentsError, RunNotFoundError):
    """No run of the issue: it was never dispatched (or the identifier is mistyped).
    Said in the issue's words, not as the run id it would have had."""

    code = "issue_not_found"

    def __init__(self, identifier: str, workflow_id: str) -> None:
        self.identifier, self.workflow_id = identifier, workflow_id
        TetherError.__init__(  # not RunNotFoundError's: it speaks of run ids
            self,
            f"no run of issue {identifier!r}: it was never dispatched; "
            "`tether agents status --all` lists the issues that were",
        )


class WorkflowFileError(AgentsError):
    """WORKFLOW.md cannot be used (codes `missing_workflow_file`, `workflow_parse_error`,
    `workflow_front_matter_not_a_map`, `invalid_config`, `missing_secret`)."""

    code = "invalid_config"


class TemplateError(AgentsError):
    """The prompt template failed (`template_parse_error`, `template_render_error`)."""

    code = "template_render_error"


class WorkspaceError(AgentsError):
    """A workspace cannot be used (`workspace_outside_root`, `workspace_symlink_escape`,
    `workspace_equals_root`, `workspace_not_a_folder`, `hook_failed`, `hook_timeout`)."""

    code = "workspace_error"


class TrackerError(AgentsError):
    """A tracker request failed (`tracker_request`, `tracker_status`, `tracker_response`,
    `tracker_rate_limited`, `unsupported_tracker_kind`, `missing_tracker_secret`).
    `retry_after`: seconds the provider asked us to wait (a rate limit), else None;
    `status`: the HTTP status of a refused request, else None."""

    code = "tracker_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.status = status

    @property
    def transient(self) -> bool:
        """Asking again may succeed: the request failed on the way, was rate-limited,
        or the provider failed (5xx). A refusal (401, 404, 422 ...) stays a refusal."""
        if self.code in ("tracker_request", "tracker_rate_limited"):
            return True
        return self.code == "tracker_status" and (self.status or 0) >= 500


class AgentError(AgentsError):
    """An agent backend could not run (`agent_not_found`, `process_exit`, `turn_timeout`)."""

    code = "agent_error"


MAX_RETRY_AFTER = 86_400.0  # seconds: a day, the longest wait a rate limit may ask

_log = logging.getLogger("tether.agents")


def capped_wait(seconds: float | None, who: str) -> float | None:
    """A rate limit's wait, at most `MAX_RETRY_AFTER` (a warning names `who` asked
    more): a broken proxy's ``Retry-After: 1e308`` or a 400-digit number would
    overflow the cooldown's datetime or the retry delay's milliseconds. None (no
    wait given) and NaN stay None."""
    if seconds is None:
        return None
    try:
        number = float(seconds)
    except OverflowError:  # an int beyond any float (JSON allows 10**400)
        number = math.inf
    if math.isnan(number):
        return None
    if number <= MAX_RETRY_AFTER:
        return number
    _log.warning("%s asked to wait %s; capped at %.0f s", who, asked(number), MAX_RETRY_AFTER)
    return MAX_RETRY_AFTER


def asked(seconds: float) -> str:
    """A wait as a short text, however long (never 309 digits)."""
    return f"{seconds:.3g} s" if math.isfinite(seconds) else "more than 1e308 s"
