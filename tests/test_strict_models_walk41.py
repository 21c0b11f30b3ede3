"""A strict pydantic model (``ConfigDict(strict=True)``) with a datetime, a UUID or an
enum reads back from its record: read in python mode, its JSON text was refused
("Input should be a valid datetime"), so a step (or an AI call) that returned one, its
side effect done and recorded, failed the run on the way back."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from tether import App, FakeClock, Workflow
from tether.serde import dump_json, load_json


class Tier(enum.Enum):
    GOLD = "gold"


class Strict(BaseModel):
    model_config = ConfigDict(strict=True)
    at: datetime
    ref: uuid.UUID
    tier: Tier
    n: int


VALUE = Strict(
    at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), ref=uuid.UUID(int=7), tier=Tier.GOLD, n=3
)


def _never():  # type: ignore[no-untyped-def]  # undeclared, as the lambda was
    raise AssertionError("a completed step ran again on replay")


async def test_a_strict_models_step_result_replays(database_url: str) -> None:
    async with App(database_url, clock=FakeClock()) as app:

        @app.workflow
        async def books(wf: Workflow) -> Strict:
            got = await wf.step("book", lambda: VALUE)
            assert got == VALUE  # the first run already reads it back from its record
            return got

        done = await app.arun(books, workflow_id="s1")
        assert done.value == VALUE
        replayed = await (await app.aopen("s1")).step("book", _never)
        assert replayed == VALUE and isinstance(replayed.at, datetime)


def test_strictness_still_refuses_what_json_does_not_spell() -> None:
    """Read from JSON, a strict int is still not a str: only the JSON forms of types
    JSON has no literal for are read."""
    assert load_json(dump_json(VALUE, what="v"), Strict) == VALUE
    as_str = dump_json(VALUE, what="v").replace('"n":3', '"n":"3"')
    assert '"n":"3"' in as_str
    with pytest.raises(ValidationError):
        load_json(as_str, Strict)


class Booking(BaseModel):
    at: datetime
    seats: tuple[int, ...]


def _typed_never() -> Booking:
    raise AssertionError("a completed step ran again on replay")


async def test_a_result_recorded_by_a_lambda_reads_back_where_the_code_now_declares_it(
    database_url: str,
) -> None:
    """Recorded by an undeclared lambda (with its class), then read by a function that
    declares that class (the code was tidied between deploys): it was refused as "does
    not fit its declared type now", the step's side effect already done."""
    booked = Booking(at=datetime(2026, 1, 2, tzinfo=UTC), seats=(1, 2))
    async with App(database_url, clock=FakeClock()) as app:
        await (await app.aopen("b1")).step("book", lambda: booked)
        again = await (await app.aopen("b1")).step("book", _typed_never)
        assert again == booked and isinstance(again, Booking) and again.seats == (1, 2)
        plain = await (await app.aopen("b2")).step("note", lambda: {"$tether": "x", "value": 1})
        assert plain == {"$tether": "x", "value": 1}
        declared = await (await app.aopen("b2")).step("note", _dict_never)
        assert declared == {"$tether": "x", "value": 1}  # the value, not its record


def _dict_never() -> dict[str, object]:
    raise AssertionError("a completed step ran again on replay")
