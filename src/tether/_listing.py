"""What `App.list_runs` is asked for, checked and turned into the store's filter.

The API, the CLI and the dashboard list runs by workflow, tag, tenant, parent and
time; a script had only a status and a count, so it read every run to find a
parent's children or one customer's runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypedDict

from ._info import RunInfo
from ._names import check_name
from .definition import WorkflowDef
from .errors import InvalidArgumentError
from .store import RunFilter, RunStatus


class RunQuery(TypedDict, total=False):
    """The filters of `App.list_runs`, as `App.iter_runs` takes them on to each page."""

    status: RunStatus | str | None
    workflow: str | Callable[..., Any] | None
    tag: str | None
    tenant: str | None
    parent: str | None
    created_after: datetime | None
    created_before: datetime | None


def run_status(status: RunStatus | str | None) -> RunStatus | None:
    """`status` as a RunStatus; an unknown one is bad input naming the known ones."""
    if status is None:
        return None
    try:
        return RunStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise InvalidArgumentError(f"unknown run status {status!r}; known: {known}") from None


def workflow_name(workflow: str | Callable[..., Any] | None) -> str | None:
    """A workflow given by name or by the function registered for it."""
    if workflow is None:
        return None
    if isinstance(workflow, str):
        return _filter_name("workflow", workflow)
    if not callable(workflow):
        raise InvalidArgumentError(
            f"workflow must be a workflow's name or its function, got {type(workflow).__name__}"
        )
    return WorkflowDef.of(workflow).name


def run_filter(
    *,
    status: RunStatus | str | None,
    workflow: str | Callable[..., Any] | None,
    tag: str | None,
    tenant: str | None,
    parent: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> RunFilter:
    for what, value in (("tag", tag), ("tenant", tenant), ("parent", parent)):
        if value is not None:
            _filter_name(what, value)
    _check_window(created_after, created_before)
    return RunFilter(
        status=run_status(status),
        workflow=workflow_name(workflow),
        tag=tag,
        tenant=tenant,
        created_after=created_after,
        created_before=created_before,
        parent=parent,
    )


def _filter_name(what: str, value: object) -> str:
    """`value` if some run could carry it: a run's names are checked as it is created
    (`check_name`), so an empty one matched nothing on SQLite and one with a NUL failed
    on PostgreSQL as a store error; both said nothing of the typo."""
    if not isinstance(value, str):
        raise InvalidArgumentError(
            f"{what} must be a string, got {type(value).__name__}; leave it out (None) "
            f"to list runs of any {what}"
        )
    try:
        return check_name(what, value)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(
            f"{exc} No run can have such a {what}; leave it out (None) to list runs of any {what}"
        ) from None


def _check_window(after: datetime | None, before: datetime | None) -> None:
    """Both bounds timezone-aware, and a window some run could be created in: bounds
    given the wrong way round listed nothing, as if no run had been created."""
    for what, when in (("created_after", after), ("created_before", before)):
        if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
            raise InvalidArgumentError(
                f"{what} must be a timezone-aware datetime (e.g. datetime.now(UTC)), got {when!r}"
            )
    if after is not None and before is not None and after >= before:
        raise InvalidArgumentError(
            f"created_after ({after.isoformat()}) must be before created_before "
            f"({before.isoformat()}): runs are listed from created_after (included) to "
            "created_before (excluded); swap them if given the wrong way round"
        )


def page_cursor(after: str | RunInfo | None, created_at: datetime | None) -> tuple[str, datetime]:
    """The store's cursor for the page after the run `after` (its id, or the RunInfo of
    the last run of the previous page, which still works once that run is deleted)."""
    if isinstance(after, RunInfo):
        return after.workflow_id, after.created_at
    if not isinstance(after, str) or created_at is None:
        raise InvalidArgumentError(
            f"after must be the last run (its id or its RunInfo) of the previous page, got "
            f"{after!r}: no such run; pass the RunInfo itself to page past a deleted run"
        )
    return after, created_at
