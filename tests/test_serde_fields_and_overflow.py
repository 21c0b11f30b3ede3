"""What a step returns inside a dataclass's or a model's fields is refused as clearly as
the same thing in a list: a value containing itself, an int too large for a declared
float, bytes that are not text. Each on the first run, with its path (a real App on
both backends)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel

from tether import App, NotSerializableError, RunStatus, Workflow


@dataclasses.dataclass
class Box:
    inner: Any = None


class Holder(BaseModel):
    inner: Any = None


class Blob(BaseModel):
    name: str
    data: bytes


class Reading(BaseModel):
    value: float


async def _refused(app: App, wid: str, fn: Any, **step: Any) -> NotSerializableError:
    """The error the first run of a one-step run raised; the step and run failed with it."""

    async def flow(wf: Workflow) -> None:
        await wf.step("s", fn, **step)

    with pytest.raises(NotSerializableError) as info:
        await app.arun(flow, workflow_id=wid)
    record = await app.aget_record(wid)
    assert record.status is RunStatus.FAILED and record.steps["s"].status.value == "failed"
    return info.value


def _box_in_itself() -> Box:
    box = Box()
    box.inner = [box]
    return box


def _holder_in_itself() -> Holder:
    holder = Holder()
    holder.inner = {"again": holder}
    return holder


async def test_a_dataclass_containing_itself_is_refused_not_a_recursion_error(
    app: App,
) -> None:
    """The walk that names the bad part recursed into the dataclass's fields for ever:
    the run failed with a bare RecursionError."""
    error = await _refused(app, "box-loop", _box_in_itself)
    assert "contains itself" in str(error) and error.path.startswith("$.inner[0].inner[0]")
    typed = await _refused(app, "box-loop-typed", _box_in_itself, result_type=Box)
    assert "contains itself" in str(typed) and typed.offending_type is Box


async def test_a_model_containing_itself_is_refused_saying_so(app: App) -> None:
    """It was refused as "not JSON-serialisable" at $, told to return a pydantic model."""
    error = await _refused(app, "holder-loop", _holder_in_itself)
    assert "contains itself" in str(error) and error.path.startswith("$.inner.again.inner")
    assert "a pydantic model, or a dataclass instead" not in str(error)


async def test_bytes_that_are_not_text_in_a_model_field_are_named_with_their_path(
    app: App,
) -> None:
    """A dataclass's field was named; a model's was "M at $ is not JSON-serialisable"."""
    error = await _refused(app, "blob", lambda: Blob(name="x", data=b"\xff\x00"))
    assert error.offending_type is bytes and error.path == "$.data"
    assert "not UTF-8 text" in str(error) and "Base64Bytes" in str(error)


def _huge() -> float:
    return 10**400  # type: ignore[return-value]  # what an untyped computation hands back


async def test_an_int_too_large_for_a_declared_float_is_refused_with_its_path(
    app: App,
) -> None:
    """pydantic's float() of it raised a bare OverflowError out of the step."""
    error = await _refused(app, "huge", _huge)
    assert error.offending_type is int and error.path == "$"
    assert "too large" in str(error) and "float" in str(error)
    listed = await _refused(app, "huge-list", lambda: [1.5, 10**400], result_type=list[float])
    assert listed.path == "$[1]"
    field = await _refused(app, "huge-field", lambda: Reading.model_construct(value=10**400))
    assert field.path == "$.value"
