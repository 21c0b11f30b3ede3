"""`App.prune` and `App.usage` refuse arguments that used to fail bare or quietly."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tether import App, InvalidArgumentError


@pytest.mark.parametrize("age", ["9" * 400 + "d", timedelta.max, "99999999d"])
async def test_an_age_too_long_for_any_calendar_is_refused_clearly(app: App, age: object) -> None:
    """Before: a bare OverflowError ("int too large to convert to float", "date value
    out of range"), not an error of tether's saying what to pass."""
    with pytest.raises(InvalidArgumentError, match=r"age|year 1"):
        await app.aprune(age)  # type: ignore[arg-type]


async def test_usage_of_children_without_a_run_is_refused(app: App) -> None:
    """Before: the sum over every run, as if `children=True` had not been passed."""
    with pytest.raises(InvalidArgumentError, match="pass run="):
        await app.ausage(children=True)
    assert await app.ausage() is not None  # without it: every run's calls
