"""Filters a new user mistypes: a time at the very start of the calendar, a blank
filter of `tether usage` (an unset shell variable), each refused with exit 2 and a
line that names the option, never a traceback or a silent "nothing found"."""

from __future__ import annotations

from pathlib import Path

import pytest

from ._helpers import create, record_summaries, tether


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list", "--until", "0001-01-01"),
        ("runs", "list", "--since", "0001-01-01"),
        ("usage", "--until", "0001-01-01"),
    ],
)
def test_a_time_on_the_first_day_of_the_calendar_is_refused_not_a_traceback(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    create(f"sqlite:///{tmp_path}/t.db")
    done = tether(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    option = args[-2]
    assert f"error: {option}: '0001-01-01' lies outside the dates" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("option", ["--workflow", "--tag"])
def test_a_blank_usage_filter_is_refused_not_reported_as_no_calls(
    tmp_path: Path, option: str
) -> None:
    record_summaries(f"sqlite:///{tmp_path}/t.db", "s1")
    for args in ((option, ""), (f"{option}=  ",), (option, "", "--json")):
        done = tether(tmp_path, "usage", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert f"{option} must not be blank" in done.stderr
        assert "no AI calls" not in done.stdout and done.stdout == ""
    given = tether(tmp_path, "usage", option, "summarise" if option == "--workflow" else "x")
    assert given.returncode == 0, given.stderr  # a real value still filters
