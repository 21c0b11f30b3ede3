"""Event filters compare as JSON does: a boolean is not a number, at any depth."""

from __future__ import annotations

import json

import pytest

from tether import App, RunStatus, Workflow
from tether.store._match import matches


async def test_a_filter_on_true_is_not_woken_by_one_nor_one_by_true(app: App) -> None:
    @app.workflow
    async def on(wf: Workflow, want: object) -> object:
        return await wf.wait_for_event("flag", match={"ok": want})

    await app.arun(on, True, workflow_id="wants-true")
    await app.arun(on, 1, workflow_id="wants-one")
    assert await app.asend_event("flag", {"ok": 1}) == ["wants-one"]
    assert (await app.aget_run("wants-true")).status is RunStatus.WAITING
    assert await app.asend_event("flag", {"ok": True}) == ["wants-true"]
    assert (await app.aresult("wants-true", timeout=10)).value == {"ok": True}


@pytest.mark.parametrize(
    ("want", "got", "same"),
    [
        ({"n": 0}, {"n": False}, False),
        ({"n": False}, {"n": 0}, False),
        ({"n": False}, {"n": False}, True),
        ({"n": 1}, {"n": 1.0}, True),  # one JSON number
        ({"a": [1, {"b": True}]}, {"a": [1, {"b": 1}]}, False),
        ({"a": [1, {"b": True}]}, {"a": [1, {"b": True}]}, True),
        ({"a": {"x": 0}}, {"a": {"x": False}}, False),
        ({"a.b": None}, {"a": {"b": None}}, True),
        ({"a.b": None}, {"a": {}}, False),  # missing is not null
    ],
)
def test_values_compare_as_json(want: object, got: object, same: bool) -> None:
    assert matches(json.dumps(want), json.dumps(got)) is same
