"""A workflow's input annotation read under ``from __future__ import annotations``,
with ``wf: Workflow`` imported only for type checkers and the input type defined
after the function."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from tether import App, InvalidArgumentError

if TYPE_CHECKING:
    from tether import Workflow

    from .never_imported import Missing


async def greet(wf: Workflow, order: Order) -> str:
    return f"{order.item} x{order.count}"


async def unresolvable(wf: Workflow, order: Missing) -> str:
    return "never"


class Order(BaseModel):
    item: str
    count: int


async def test_input_typed_though_wf_annotation_is_type_checking_only(app: App) -> None:
    result = await app.arun(greet, {"item": "tea", "count": "2"}, workflow_id="o-1")
    assert result.value == "tea x2"


async def test_bad_input_refused_by_its_model_when_wf_is_type_checking_only(app: App) -> None:
    with pytest.raises(InvalidArgumentError, match=r"input\.count"):
        await app.arun(greet, {"item": "tea", "count": "many"}, workflow_id="o-2")


async def test_input_type_that_cannot_be_resolved_is_refused_clearly(app: App) -> None:
    with pytest.raises(InvalidArgumentError, match=r"'Missing'.*TYPE_CHECKING"):
        await app.arun(unresolvable, {"item": "tea"}, workflow_id="o-3")


async def test_workflow_taking_star_args_gets_its_input(app: App) -> None:
    async def body(wf: Workflow, doc: str) -> str:
        return await wf.step("echo", lambda: f"got {doc}")

    async def wrapper(*args: object, **kwargs: object) -> str:
        return await body(*args, **kwargs)  # type: ignore[arg-type]

    assert (await app.arun(wrapper, "d1", workflow_id="w-1")).value == "got d1"
    resumed = await app.aresume("w-1")
    assert resumed.value == "got d1"
