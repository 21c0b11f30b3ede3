"""The database rule's pieces: an App rebuilt on another database keeps what it was
given; ages and times as typed on the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tether import App, Workflow
from tether._durations import parse_age, parse_when
from tether.errors import InvalidArgumentError
from tether.kernel import LoggingSink


async def hello(wf: Workflow) -> str:
    return await wf.step("hi", lambda: "hi")


def test_with_database_keeps_the_apps_settings_and_workflows(tmp_path: Path) -> None:
    sink = LoggingSink()
    first = App(f"sqlite:///{tmp_path}/a.db", sinks=[sink], owner_lease=12, inline_wait=1.5)
    first.workflow(hello)
    first.queue("slow", concurrency=2)
    other = first.with_database(f"sqlite:///{tmp_path}/b.db")
    try:
        assert other.database_url == f"sqlite:///{tmp_path}/b.db"
        assert set(other.workflows) == {"hello"} and other.queue_limits == first.queue_limits
        assert other._settings == first._settings and other._settings["sinks"] == (sink,)
        assert other.run(hello, workflow_id="h1").record.output == "hi"
    finally:
        other.close()
        first.close()
    assert (tmp_path / "b.db").exists() and not (tmp_path / "a.db").exists()


def test_ages_and_times() -> None:
    assert parse_age("30m") == timedelta(minutes=30) and parse_age("7d") == timedelta(days=7)
    assert parse_age(" 2H ") == timedelta(hours=2) and parse_age("1.5h") == timedelta(minutes=90)
    for bad in ("", "30", "m", "-1d", "0s", "a month"):
        with pytest.raises(InvalidArgumentError):
            parse_age(bad)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_when("2h", now) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert parse_when("2026-12-01T09:30+02:00", now) == datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
    local = parse_when("2026-12-01", now)
    assert local == datetime(2026, 12, 1).astimezone().astimezone(UTC)
    with pytest.raises(InvalidArgumentError, match="cannot read 'tomorrow' as a time"):
        parse_when("tomorrow", now)
