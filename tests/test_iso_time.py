"""The JSON's times, both ways: UTC written as ``Z``, read back to the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from tether._iso_time import from_iso, iso_z
from tether.kernel import OutboxEvent

AT = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def test_utc_is_written_as_z_and_read_back_to_the_same_instant() -> None:
    text = iso_z(AT)
    assert text == "2024-05-06T07:08:09.123456Z"
    assert from_iso(text) == AT


def test_another_offset_is_kept_as_written() -> None:
    at = AT.astimezone(timezone(timedelta(hours=2)))
    assert iso_z(at) == "2024-05-06T09:08:09.123456+02:00"
    assert from_iso(iso_z(at)) == AT


def test_none_stays_none_both_ways() -> None:
    assert iso_z(None) is None
    assert from_iso(None) is None


def test_an_outbox_event_writes_its_time_as_the_record_does() -> None:
    event = OutboxEvent("wf-1", 3, "step.completed", None, None, AT, 1)
    assert event.to_dict()["at"] == iso_z(AT)
