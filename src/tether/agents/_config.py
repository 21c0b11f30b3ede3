"""WORKFLOW.md: YAML front matter (the dispatcher's settings) and a Liquid prompt.

Loading follows Symphony: the file starts with a line that is exactly ``---``,
the front matter runs to the next such line and must be a map, the rest
(trimmed) is the prompt template. A value that is exactly ``$NAME`` (or
``${NAME}``) is read from the environment (an empty variable counts as missing);
path values also expand ``~`` and ``$VAR`` (a variable unset or empty is an
error, not a folder named ``$VAR``), and a relative path is taken from the folder
holding WORKFLOW.md. Secrets are `SecretStr`: no repr, log or error shows
them. Unknown top-level keys are ignored; an unknown key inside a section is
an error (a typo must not silently fall back to a default).

`WorkflowWatcher` re-reads the file when it changes: a valid change applies
to what starts next, an invalid one keeps the last good config and says why.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from ..ai import Budget
from ._errors import TemplateError, WorkflowFileError
from ._issue import normalise_labels, normalise_state
from ._prompt import check_template

__all__ = [
    "DEFAULT_PROMPT",
    "AgentSettings",
    "BudgetSettings",
    "HooksSettings",
    "PollingSettings",
    "ServerSettings",
    "TrackerSettings",
    "WorkflowConfig",
    "WorkflowFile",
    "WorkflowWatcher",
    "WorkspaceSettings",
    "load_workflow",
    "parse_workflow",
    "tracker_secret",
]

DEFAULT_PROMPT = "You are working on an issue from the configured tracker."

_DEFAULT_STATES: dict[str, tuple[list[str], list[str]]] = {
    "file": (["todo", "in progress"], ["done", "cancelled"]),
    "github": (["open"], ["closed"]),
    "linear": (["Todo", "In Progress"], ["Closed", "Cancelled", "Canceled", "Duplicate", "Done"]),
    "memory": (["Todo", "In Progress"], ["Closed", "Cancelled", "Canceled", "Duplicate", "Done"]),
}
_ENV_REF = re.compile(r"^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))$")
_PATH_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_REPO = re.compile(r"[^/\s]+/[^/\s]+")  # github: owner/name

# upper bounds of the numeric settings: a value past them is a typo, and the huge ones
# overflowed later (a timer's datetime, ``Budget``'s finite check on every attempt)
DAY_MS = 86_400_000  # a timeout, an interval or a backoff: at most a day
MAX_COUNT = 10_000  # turns, retries, agents, tool rounds
MAX_USD = 1_000_000
MAX_TOKENS = 10**12


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans(cls, data: Any) -> Any:
        """YAML's true/false is no number (pydantic would read it as 1/0)."""
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(str(key))
                if isinstance(value, bool) and field is not None and field.annotation is not bool:
                    allowed = _allowed(field)
                    said = f" ({allowed})" if allowed else ""
                    raise ValueError(f"{key} must not be {str(value).lower()}; give a value{said}")
        return data


class TrackerSettings(_Section):
    """Where issues come from. `kind` picks the adapter; `active_states` and
    `terminal_states` default per kind; `handoff_state`, if set, is where a run
    moves its issue after the agent finished a turn cleanly."""

    kind: Literal["file", "github", "linear", "memory"]
    path: str | None = None  # file: the markdown file of issues
    repo: str | None = None  # github: owner/name
    endpoint: str | None = None
    api_key: SecretStr | None = None
    project_slug: str | None = None  # linear: the project's slug id
    team: str | None = None  # linear: the team's key (ENG)
    assignee: str | None = None
    active_states: list[str] | None = None
    terminal_states: list[str] | None = None
    required_labels: list[str] = []
    handoff_state: str | None = None

    @field_validator("api_key", mode="before")
    @classmethod
    def _key(cls, value: Any) -> Any:
        """Without surrounding whitespace: a key from ``$(cat keyfile)`` ends in a
        newline, which was sent in the Authorization header and refused. One with a
        control character inside it (a key file of two lines) can never be sent."""
        if not isinstance(value, str):
            return value
        if any(ord(c) < 32 or ord(c) == 127 for c in value.strip()):
            raise ValueError("the key holds a line break or control character; give one line")
        return value.strip()

    @field_validator("required_labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        # Symphony: a blank label matches no issue; dropping it would match every one
        if any(not str(label).strip() for label in value):
            raise ValueError("a label is blank, which no issue has; remove it")
        return list(normalise_labels(value))

    @field_validator("active_states", "terminal_states", mode="before")
    @classmethod
    def _state_list(cls, value: Any) -> Any:
        """Symphony takes a list or a comma-separated string (``Todo, In Progress``)."""
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    def active(self) -> list[str]:
        return (
            self.active_states if self.active_states is not None else _DEFAULT_STATES[self.kind][0]
        )

    def terminal(self) -> list[str]:
        if self.terminal_states is not None:
            return self.terminal_states
        return _DEFAULT_STATES[self.kind][1]

    def is_active(self, state: str) -> bool:
        s = normalise_state(state)
        return s in {normalise_state(x) for x in self.active()} and not self.is_terminal(state)

    def is_terminal(self, state: str) -> bool:
        return normalise_state(state) in {normalise_state(x) for x in self.terminal()}


class PollingSettings(_Section):
    interval_ms: int = Field(default=30_000, ge=1, le=DAY_MS)


class WorkspaceSettings(_Section):
    """`root` holds one folder per issue. The cleanup chore removes the workspaces of
    terminal issues, and those older than `max_age_days` or beyond `max_total_mb`
    (oldest first), never one an agent is working in."""

    root: str = str(Path(tempfile.gettempdir()) / "tether_workspaces")
    max_age_days: float | None = Field(default=None, gt=0, le=36_500)  # a century
    max_total_mb: float | None = Field(default=None, gt=0, le=10**9)  # a petabyte


class HooksSettings(_Section):
    after_create: str | None = None
    before_run: str | None = None
    after_run: str | None = None
    before_remove: str | None = None
    timeout_ms: int = Field(default=60_000, ge=1, le=DAY_MS)


class AgentSettings(_Section):
    """The agent and the scheduler's limits. A failure after `max_retries` retries in a
    row (`max_retries` + 1 failures) parks the issue for a person (`tether agents
    retry`); None retries forever (Symphony)."""

    backend: Literal["api", "claude", "codex", "command", "mock"] = "codex"
    command: str | None = None
    model: str | None = None  # api: 'provider:model', e.g. 'anthropic:claude-sonnet-4-5'
    max_tool_rounds: int = Field(default=50, ge=1, le=MAX_COUNT)  # api: model calls in one turn
    command_timeout_ms: int = Field(default=300_000, ge=1, le=DAY_MS)  # api: one run_command
    max_sessions: int = Field(default=100, ge=1, le=MAX_COUNT)  # api: conversations kept in memory
    script: list[Any] = []  # mock: one entry per turn
    max_concurrent_agents: int = Field(default=10, ge=1, le=MAX_COUNT)
    max_concurrent_agents_by_state: dict[str, int] = {}
    max_turns: int = Field(default=20, ge=1, le=MAX_COUNT)
    max_retries: int | None = Field(default=5, ge=0, le=MAX_COUNT)
    max_retry_backoff_ms: int = Field(default=300_000, ge=1, le=DAY_MS)
    turn_timeout_ms: int = Field(default=3_600_000, ge=1, le=DAY_MS)
    stall_timeout_ms: int = Field(default=300_000, ge=0, le=DAY_MS)
    rate_limit_cooldown_ms: int = Field(default=60_000, ge=0, le=DAY_MS)
    shutdown_grace_ms: int = Field(default=30_000, ge=0, le=DAY_MS)  # turns in flight at SIGTERM

    @field_validator("max_concurrent_agents_by_state", mode="before")
    @classmethod
    def _by_state(cls, value: Any) -> Any:
        """Before pydantic's coercion, which reads YAML's ``true`` as a cap of 1."""
        if not isinstance(value, dict):
            return value  # pydantic says what is wrong with it
        caps: dict[str, int] = {}
        named: dict[str, str] = {}
        for state, cap in value.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_COUNT:
                raise ValueError(
                    f"the cap of state {state!r} must be an integer > 0, got {_shown(cap)}; "
                    f"give one from 1 to {MAX_COUNT:,}"
                )
            key = normalise_state(str(state))
            if key in named:
                raise ValueError(
                    f"{named[key]!r} and {state!r} are the same state (case and spaces "
                    "aside); give it one cap"
                )
            named[key], caps[key] = str(state), cap
        return caps

    def default_command(self) -> str:
        if self.command:
            return self.command
        return {"claude": "claude", "codex": "codex"}.get(self.backend, "")


class BudgetSettings(_Section):
    """Per-issue AI spend, summed over every run of the issue (retries included)."""

    max_usd: float | None = Field(default=None, gt=0, le=MAX_USD)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    warn_at: float = Field(default=0.8, gt=0, le=1)
    on_exceed: Literal["fail", "pause"] = "pause"
    period: Literal["hour", "day", "week", "month"] | None = None  # else the issue's life

    def budget(self, key: str) -> Budget | None:
        if self.max_usd is None and self.max_tokens is None:
            return None
        return Budget(
            max_usd=self.max_usd,
            max_tokens=self.max_tokens,
            warn_at=self.warn_at,
            on_exceed=self.on_exceed,
            key=key,
            period=self.period,
        )


class ServerSettings(_Section):
    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "127.0.0.1"


class WorkflowConfig(BaseModel):
    """The front matter of WORKFLOW.md, validated."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    tracker: TrackerSettings
    polling: PollingSettings = PollingSettings()
    workspace: WorkspaceSettings = WorkspaceSettings()
    hooks: HooksSettings = HooksSettings()
    agent: AgentSettings = AgentSettings()
    budget: BudgetSettings = BudgetSettings()
    server: ServerSettings = ServerSettings()
    database_url: str | None = None


@dataclass(frozen=True)
class WorkflowFile:
    """A loaded WORKFLOW.md: its settings, its prompt template, where it is and the
    sha256 of its text (recorded by every attempt that used it)."""

    config: WorkflowConfig
    prompt: str
    path: Path | None
    sha256: str

    @property
    def workspace_root(self) -> Path:
        return Path(self.config.workspace.root)


def _split(text: str, where: str) -> tuple[dict[str, Any], str]:
    lines = text.removeprefix("\ufeff").splitlines()  # an editor's byte order mark
    if not lines or lines[0].strip() != "---":
        return {}, text.strip()
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise WorkflowFileError(
            f"{where}: the front matter opened by '---' on line 1 is never closed; "
            "end it with a line that is exactly '---'",
            code="workflow_parse_error",
        ) from None
    try:
        front = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise WorkflowFileError(
            f"{where}: the front matter is not valid YAML{_yaml_problem(exc)}",
            code="workflow_parse_error",
        ) from None
    if front is None:
        front = {}
    if not isinstance(front, dict):
        raise WorkflowFileError(
            f"{where}: the front matter must be a map of keys (tracker:, agent:, ...), "
            f"got a {type(front).__name__}",
            code="workflow_front_matter_not_a_map",
        )
    return front, "\n".join(lines[end + 1 :]).strip()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, by the lines of WORKFLOW.md (YAML counts from the front matter's
    first line, which is the file's second: its own numbers sent people to the wrong
    line)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or not problem:
        return f" ({' '.join(str(exc).split())})"
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context else str(problem)
    return f" at line {mark.line + 2}, column {mark.column + 1} ({what})"


_SECRETS = {("tracker", "api_key")}
_PATHS = {("workspace", "root"), ("tracker", "path")}


def _resolve(front: dict[str, Any], base: Path | None, where: str) -> dict[str, Any]:
    """`$NAME` values from the environment; `~`/`$VAR` and relative paths for paths."""
    out: dict[str, Any] = {}
    for section, body in front.items():
        if not isinstance(body, dict):
            out[section] = _env_value(body, str(section), where, secret=False)
            continue
        fixed: dict[str, Any] = {}
        for key, value in body.items():
            name = f"{section}.{key}"
            value = _env_value(value, name, where, secret=(section, key) in _SECRETS)
            if (section, key) in _PATHS and isinstance(value, str):
                path = Path(_expand_path(value, name, where))
                if not path.is_absolute() and base is not None:
                    path = base / path
                value = str(path.resolve())
            fixed[key] = value
        out[section] = fixed
    return out


def _env_value(value: Any, name: str, where: str, *, secret: bool) -> Any:
    """A value that is exactly ``$NAME`` or ``${NAME}``, from the environment (the
    braced form was sent as it stands: a key ``${LINEAR_API_KEY}``, refused as wrong)."""
    if not isinstance(value, str):
        return value
    m = _ENV_REF.match(value.strip())
    if m is None:
        return value
    var = m.group(1) or m.group(2)
    found = os.environ.get(var, "")
    if not (found.strip() if secret else found):  # a key of spaces: refused as wrong
        raise _unset(var, f"{name} is ${var}", where, "missing_secret" if secret else "")
    return found


def _expand_path(value: str, name: str, where: str) -> str:
    """``~`` and every ``$VAR`` of a path; a variable unset or empty is an error, where
    `os.path.expandvars` kept ``$VAR`` as a folder's name (workspaces created in a
    folder literally named ``$WORKSPACES`` beside WORKFLOW.md), or made an empty one
    ``/sub`` of ``$VAR/sub``."""
    for m in _PATH_VAR.finditer(value):
        var = m.group(1) or m.group(2)
        if not os.environ.get(var):
            raise _unset(var, f"{name} uses ${var}", where, "")
    return os.path.expandvars(os.path.expanduser(value))


def _unset(var: str, what: str, where: str, code: str) -> WorkflowFileError:
    value = os.environ.get(var)
    state = "not set" if value is None else ("blank" if value else "empty")
    return WorkflowFileError(
        f"{where}: {what}, and that environment variable is {state}; export it before starting",
        code=code or "invalid_config",
    )


def _explain(exc: ValidationError, where: str) -> WorkflowFileError:
    problems = []
    for e in exc.errors(include_url=False)[:5]:
        key = ".".join(str(p) for p in e["loc"]) or "front matter"
        if e["type"] == "missing":
            fix = f"add {key}" + (
                " (file, github, linear or memory)" if key.endswith("kind") else ""
            )
        elif e["type"] == "extra_forbidden":
            fix = f"remove {key} or check its spelling" + _did_you_mean(e["loc"])
        elif e["type"] in _OUT_OF_RANGE and (allowed := _allowed(_field_of(e["loc"]))):
            problems.append(f"{key} must be {allowed} (got {_shown(e.get('input'))})")
            continue
        else:
            shown = "<secret>" if "api_key" in key else _shown(e.get("input"))
            fix = f"got {shown}" + _one_of(e)
        problems.append(f"{key}: {e['msg']} ({fix})")
    return WorkflowFileError(f"{where}: " + "; ".join(problems), code="invalid_config")


# pydantic's refusals of a number out of its setting's bounds (or none at all)
_OUT_OF_RANGE = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "finite_number",
    "int_from_float",
    "int_parsing",
    "int_parsing_size",
    "float_parsing",
}


def _field_of(loc: tuple[int | str, ...]) -> FieldInfo | None:
    """The setting a ``(section, key)`` location names, None for anything else."""
    section = WorkflowConfig.model_fields.get(str(loc[0])) if len(loc) == 2 else None
    model = section.annotation if section is not None else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    return model.model_fields.get(str(loc[1]))


def _allowed(field: FieldInfo | None) -> str:
    """What a numeric setting takes, from its bounds: ``an integer from 1 to 10,000``,
    ``a number > 0 and <= 1,000,000``; "" for a setting without bounds."""
    if field is None:
        return ""
    bounds = {k: getattr(m, k) for m in field.metadata for k in ("gt", "ge", "le") if hasattr(m, k)}
    if "le" not in bounds:
        return ""
    top = f"{bounds['le']:,}"
    if int in get_args(field.annotation) or field.annotation is int:
        return f"an integer from {bounds.get('ge', 0):,} to {top}"
    low = f"> {bounds['gt']:,}" if "gt" in bounds else f">= {bounds.get('ge', 0):,}"
    return f"a number {low} and <= {top}"


def _shown(value: Any) -> str:
    """A refused value as the error shows it: a 400-digit number cut short."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"


def _did_you_mean(loc: tuple[int | str, ...]) -> str:
    """``; did you mean agent.max_concurrent_agents?`` for a misspelt key of a section."""
    field = WorkflowConfig.model_fields.get(str(loc[0])) if len(loc) == 2 else None
    section = field.annotation if field is not None else None
    if not (isinstance(section, type) and issubclass(section, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[1]), list(section.model_fields), n=1, cutoff=0.7)
    return f"; did you mean {loc[0]}.{close[0]}?" if close else ""


def _one_of(e: Any) -> str:
    """``; did you mean 'command'?`` for a misspelt choice (``backend: comand``)."""
    given, expected = e.get("input"), (e.get("ctx") or {}).get("expected")
    if e["type"] != "literal_error" or not isinstance(given, str) or not expected:
        return ""
    choices = re.findall(r"'([^']*)'", str(expected))
    close = difflib.get_close_matches(given.lower(), choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


_SECRET_ENV = {"github": "GITHUB_TOKEN", "linear": "LINEAR_API_KEY"}


def tracker_secret(tracker: TrackerSettings) -> str | None:
    """The tracker's API key: `api_key` (often ``$GITHUB_TOKEN``), else the kind's
    usual variable (GITHUB_TOKEN, LINEAR_API_KEY); None if neither is set. Without
    surrounding whitespace (a trailing newline is refused by the tracker, HTTP 401),
    and a blank one is none: sent, it is only refused on every tick."""
    if tracker.api_key is not None:
        key = tracker.api_key.get_secret_value()
    else:
        name = _SECRET_ENV.get(tracker.kind)
        key = os.environ.get(name, "") if name else ""
    return key.strip() or None


def _check_tracker(tracker: TrackerSettings, where: str) -> None:
    problem = None
    if tracker.kind == "file" and not tracker.path:
        problem = (
            "tracker.path is missing; the file tracker reads its issues from a "
            "markdown file, e.g. 'path: ISSUES.md'"
        )
    elif tracker.kind == "github" and not tracker.repo:
        problem = "tracker.repo is missing; the github tracker needs 'repo: owner/name'"
    elif tracker.kind == "github" and not _REPO.fullmatch(str(tracker.repo)):
        # before, only building the tracker refused it: a reload took it as good
        problem = f"tracker.repo must be 'owner/name' (e.g. 'acme/api'), got {tracker.repo!r}"
    elif tracker.kind == "linear" and not (tracker.project_slug or tracker.team):
        problem = (
            "tracker.project_slug or tracker.team is missing; the linear tracker needs "
            "one of them, e.g. 'team: ENG'"
        )
    if problem is not None:
        raise WorkflowFileError(f"{where}: {problem}", code="invalid_config")
    if tracker.kind in _SECRET_ENV and tracker_secret(tracker) is None:
        blank = "tracker.api_key is blank; " if tracker.api_key is not None else ""
        raise WorkflowFileError(
            f"{where}: {blank}the {tracker.kind} tracker needs an API key; set "
            f"'api_key: ${_SECRET_ENV[tracker.kind]}' and export that variable",
            code="missing_tracker_secret",
        )


def _check_states(tracker: TrackerSettings, where: str) -> None:
    """States that contradict each other (the scheduler could never settle them)."""
    active = {normalise_state(s) for s in tracker.active()}
    problem = None
    if not active:
        problem = "tracker.active_states is empty, so no issue would ever be dispatched"
    elif both := sorted(active & {normalise_state(s) for s in tracker.terminal()}):
        problem = (
            f"state {both[0]!r} is in both tracker.active_states and "
            "tracker.terminal_states; a state is one or the other"
        )
    elif tracker.handoff_state and normalise_state(tracker.handoff_state) in active:
        problem = (
            f"tracker.handoff_state {tracker.handoff_state!r} is an active state, so a "
            "handed-off issue would be dispatched again; hand off to a state outside "
            f"active_states ({', '.join(tracker.active())}), e.g. 'review'"
        )
    if problem is not None:
        raise WorkflowFileError(f"{where}: {problem}", code="invalid_config")


def _check_caps(config: WorkflowConfig, where: str) -> None:
    """A per-state cap counts the agents at work on issues in that state, all of them in
    an active state: a cap on any other state (``in-progress`` for ``In Progress``)
    would never hold, silently."""
    active = [normalise_state(s) for s in config.tracker.active()]
    for state in config.agent.max_concurrent_agents_by_state:
        if state in active:
            continue
        close = difflib.get_close_matches(state, active, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise WorkflowFileError(
            f"{where}: agent.max_concurrent_agents_by_state caps state {state!r}, which is "
            f"not an active state, so the cap would never apply; {hint}(active_states: "
            f"{', '.join(config.tracker.active())})",
            code="invalid_config",
        )


def _check_root(
    front: dict[str, Any], config: WorkflowConfig, path: Path | None, where: str
) -> None:
    """Refuse a workspace root that holds far more than workspaces: `/`, the home
    folder, or the folder of WORKFLOW.md (or one above it)."""
    section = front.get("workspace")
    raw = section.get("root") if isinstance(section, dict) else None
    root = Path(config.workspace.root).resolve()
    problem = None
    if isinstance(raw, str) and not raw.strip():
        problem = "is empty"
    elif root == Path(root.anchor) or root == Path.home().resolve():
        problem = f"is {root}"
    elif path is not None and path.resolve().parent.is_relative_to(root):
        problem = f"is {root}, the folder of WORKFLOW.md" + (
            "" if path.resolve().parent == root else " or one above it"
        )
    if problem is None and root.exists() and not root.is_dir():
        raise WorkflowFileError(  # else every attempt fails on it, retried, unclear
            f"{where}: workspace.root is {root}, which is a file, not a folder; point it "
            "at a folder (created if missing) for the issues' workspaces, e.g. "
            "'root: .workspaces'",
            code="invalid_config",
        )
    if problem is not None:
        raise WorkflowFileError(
            f"{where}: workspace.root {problem}; it must be a folder of its own for the "
            "issues' workspaces (they are created and removed there), e.g. "
            "'root: .workspaces'",
            code="invalid_config",
        )


def _check_sections(front: dict[str, Any], where: str) -> None:
    """Unknown top-level keys are ignored (Symphony: other tools' extensions), but not
    a misspelt section (``agnet:`` would run the default agent), nor Symphony's
    ``codex:`` in a file that does not choose tether's agent (``agent.backend``): its
    command and timeouts would silently not apply (tether reads them under agent:)."""
    known = list(WorkflowConfig.model_fields)
    agent = front.get("agent")
    for key in front:
        name = str(key)
        if name in known:
            continue
        if name == "codex" and not (isinstance(agent, dict) and "backend" in agent):
            raise WorkflowFileError(
                f"{where}: codex: is Symphony's section and tether does not read it; put the "
                "agent's settings under agent: (backend: codex, command, turn_timeout_ms, "
                "stall_timeout_ms)",
                code="invalid_config",
            )
        close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.75)
        if close:
            raise WorkflowFileError(
                f"{where}: unknown section {name!r}; did you mean {close[0]!r}? "
                f"(the sections are {', '.join(known)})",
                code="invalid_config",
            )


def parse_workflow(text: str, *, path: Path | None = None) -> WorkflowFile:
    """A WORKFLOW.md's text, validated; `WorkflowFileError` naming the key and the fix."""
    where = str(path) if path is not None else "WORKFLOW.md"
    front, prompt = _split(text, where)
    _check_sections(front, where)
    if "tracker" not in front:
        raise WorkflowFileError(
            f"{where}: tracker is missing; add e.g. 'tracker: {{kind: file, path: ISSUES.md}}'",
            code="invalid_config",
        )
    resolved = _resolve(front, path.parent if path is not None else None, where)
    try:
        config = WorkflowConfig.model_validate(resolved)
    except ValidationError as exc:
        raise _explain(exc, where) from None
    _check_tracker(config.tracker, where)
    _check_states(config.tracker, where)
    _check_caps(config, where)
    _check_root(front, config, path, where)
    if config.agent.backend in ("command",) and not config.agent.command:
        raise WorkflowFileError(
            f"{where}: agent.command is missing; the command backend runs it, e.g. "
            "'command: python agent.py'",
            code="invalid_config",
        )
    if config.agent.backend == "api" and ":" not in (config.agent.model or ""):
        raise WorkflowFileError(
            f"{where}: agent.model must name the model as 'provider:model' for the api "
            "backend, e.g. 'model: anthropic:claude-sonnet-4-5'",
            code="invalid_config",
        )
    if prompt:
        try:
            check_template(prompt)
        except TemplateError as exc:  # which file, as every other refusal says
            raise TemplateError(f"{where}: {exc}", code=exc.code) from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    return WorkflowFile(config=config, prompt=prompt or DEFAULT_PROMPT, path=path, sha256=digest)


def load_workflow(path: str | Path = "WORKFLOW.md") -> WorkflowFile:
    """Read and validate a WORKFLOW.md (`missing_workflow_file` if it is not there)."""
    p = Path(path).expanduser().resolve()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowFileError(
            f"no workflow file at {p}; pass its path (tether agents run path/to/WORKFLOW.md) "
            "or create one (see examples/agents/WORKFLOW.md)",
            code="missing_workflow_file",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowFileError(f"cannot read {p}: {exc}", code="workflow_parse_error") from None
    return parse_workflow(text, path=p)


class WorkflowWatcher:
    """The last good WORKFLOW.md, re-read when the file changes (polled by `check`).

    Starting with an invalid file raises; an invalid change later keeps the last
    good config and `check` returns the reason (and keeps returning it until the
    file changes again)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self.current = load_workflow(self.path)
        self.error: str | None = None
        self._seen = self._signature()

    def _signature(self) -> bytes | None:
        """The file's content digest: its mtime and size missed an edit of the same
        length saved within one tick of a coarse clock (a typo fixed at once)."""
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return None

    def check(self) -> bool:
        """Re-read the file if it changed; True when a new valid config applies."""
        sig = self._signature()
        if sig == self._seen:
            return False
        self._seen = sig
        try:
            loaded = load_workflow(self.path)
        except (WorkflowFileError, TemplateError) as exc:
            self.error = str(exc)
            return False
        self.error = None
        if loaded.sha256 == self.current.sha256:
            return False
        self.current = loaded
        return True
