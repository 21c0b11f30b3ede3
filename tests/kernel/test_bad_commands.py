"""A dispatched command is checked as the App's own calls are: what cannot be a
command, a name the database cannot store, a naive `run_after`, each refused with
an `InvalidArgumentError` naming what was wrong, and nothing created."""

from __future__ import annotations

import pytest

import tether
from tether import App, Workflow


@pytest.mark.parametrize("payload", [None, "run.create", ["run.create"], 42])
async def test_something_that_is_no_command_is_refused_clearly(app: App, payload: object) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=r"pass a command of tether\.kernel"):
        await app.kernel.adispatch(payload)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ({"workflow_id": "a\x00b"}, r"workflow_id .* contains a NUL"),
        ({"workflow_id": "   "}, "workflow_id must be a non-empty string"),
        ({"queue": "q\x00", "workflow_id": "r1"}, r"queue .* contains a NUL"),
        ({"idempotency_key": "k" * 1001}, "idempotency_key .* bytes long"),
        (
            {"run_after": "2026-01-01T00:00:00", "queue": "q"},
            "run_after: Input should have timezone",
        ),
    ],
)
async def test_a_run_create_the_app_would_refuse_is_refused_by_the_kernel(
    app: App, extra: dict[str, object], what: str
) -> None:
    @app.workflow(name="w")
    async def w(wf: Workflow) -> str:
        return await wf.step("s", lambda: "done")

    with pytest.raises(tether.InvalidArgumentError, match=f"invalid command: .*{what}"):
        await app.kernel.adispatch({"type": "run.create", "workflow": "w", **extra})
    assert await app.store.list_runs() == []
