"""Schedules walked as a new user would: a time zone given as an object, or with the
wrong case, was refused as a zone that does not exist."""

from __future__ import annotations

from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

import tether
from tether.schedules import Schedule


@pytest.mark.parametrize(
    ("zone", "example"),
    [
        (ZoneInfo("Europe/Berlin"), "'Europe/Berlin'"),
        (UTC, "'Europe/Berlin'"),
        (None, "'Europe/Berlin'"),
    ],
    ids=["zoneinfo", "datetime-utc", "none"],
)
def test_a_zone_object_is_refused_asking_for_its_name(zone: object, example: str) -> None:
    """``timezone=ZoneInfo("Europe/Berlin")`` was "not a known IANA time zone"."""
    with pytest.raises(tether.InvalidArgumentError) as caught:
        Schedule("s", "w", "30 2 * * *", timezone=zone)  # type: ignore[arg-type]
    said = str(caught.value)
    assert "not a known IANA time zone" not in said, said
    assert "IANA name as a string" in said and f"timezone={example}" in said, said


@pytest.mark.parametrize(("name", "meant"), [("europe/berlin", "Europe/Berlin"), ("utc ", "UTC")])
def test_a_zone_name_in_the_wrong_case_names_the_zone_meant(name: str, meant: str) -> None:
    with pytest.raises(tether.InvalidArgumentError, match=f"did you mean '{meant}'"):
        Schedule("s", "w", "30 2 * * *", timezone=name)


def test_an_unknown_zone_name_still_says_which_names_work() -> None:
    with pytest.raises(tether.InvalidArgumentError) as caught:
        Schedule("s", "w", "30 2 * * *", timezone="Europe/Berln")
    said = str(caught.value)
    assert "not a known IANA time zone" in said and "'Europe/Berlin'" in said
    assert "did you mean" not in said
    assert Schedule("s", "w", "30 2 * * *", timezone="Europe/Berlin").zone().key == (
        "Europe/Berlin"
    )
