"""The file tracker: parse the markdown, write state moves and comments once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.agents import TrackerError
from tether.agents.trackers import FileTracker, parse_issues

TEXT = """# Roadmap

## ENG-1: First thing
- status: Todo
- priority: 2
- labels: Agent, docs, agent
- blocked by: ENG-2, ENG-9
- created: 2026-01-02

Do the first thing.
Carefully.

## ENG-2: Second
- **Status:** done

## A heading without an identifier
- status: backlog
- dispatchable: no
"""


def test_parse() -> None:
    one, two, three = parse_issues(TEXT)
    assert (one.identifier, one.title, one.state, one.priority) == (
        "ENG-1",
        "First thing",
        "Todo",
        2,
    )
    assert one.labels == ("agent", "docs") and one.created_at == "2026-01-02"
    assert [(b.identifier, b.state) for b in one.blocked_by] == [("ENG-2", "done"), ("ENG-9", None)]
    assert one.description == "Do the first thing.\nCarefully."
    assert two.state == "done" and two.description is None
    assert three.identifier.startswith("a-heading-without-an-") and not three.dispatchable


async def test_moves_and_comments_land_once(tmp_path: Path) -> None:
    path = tmp_path / "ISSUES.md"
    path.write_text(TEXT)
    t = FileTracker(path)
    assert [i.identifier for i in await t.fetch_issues_by_states(["todo"])] == ["ENG-1"]
    await t.move("ENG-1", "review", marker="tether-run:r:handoff")
    await t.comment("ENG-1", "agent finished", marker="tether-run:r:note")
    await t.comment("ENG-1", "agent finished", marker="tether-run:r:note")  # after a crash
    text = path.read_text()
    assert text.count("tether-run:r:note") == 1 and "- status: review" in text
    [one] = await t.fetch_issues_by_ids(["ENG-1"])
    assert (
        one.state == "review"
        and one.description is not None
        and "agent finished" in one.description
    )
    assert await t.fetch_issues_by_states([]) == [] and await t.fetch_issues_by_ids([]) == []


async def test_a_file_that_is_not_utf8_is_a_tracker_error_naming_it(tmp_path: Path) -> None:
    """Before: ``'utf-8' codec can't decode byte 0xe9 ...`` at every tick, naming no
    file and no fix."""
    path = tmp_path / "ISSUES.md"
    path.write_bytes("## ENG-1: caf\u00e9\n- status: todo\n".encode("latin-1"))
    with pytest.raises(TrackerError) as err:
        await FileTracker(path).fetch_issues_by_states(["todo"])
    assert err.value.code == "tracker_response"
    assert str(path) in str(err.value) and "not UTF-8" in str(err.value)


async def test_a_quoted_marker_in_the_issue_is_not_taken_for_tethers_own(tmp_path: Path) -> None:
    path = tmp_path / "ISSUES.md"
    tag = "<!-- tether-run:r:note -->"
    quoted = f"Carefully.\n\nA person wrote:\n> > **tether:** agent finished {tag}"
    path.write_text(TEXT.replace("Carefully.", quoted))
    t = FileTracker(path)
    await t.comment("ENG-1", "agent finished", marker="tether-run:r:note")
    assert path.read_text().count(tag) == 2


@pytest.mark.parametrize("mode", [0o644, 0o664, 0o600])
async def test_a_move_keeps_the_files_mode(tmp_path: Path, mode: int) -> None:
    # before: every write left the file 0600 (its temporary file's mode), unreadable
    # to the group and others that could read it before
    path = tmp_path / "ISSUES.md"
    path.write_text(TEXT)
    path.chmod(mode)
    await FileTracker(path).move("ENG-1", "review", marker="tether-run:r:handoff")
    assert "- status: review" in path.read_text()
    assert path.stat().st_mode & 0o777 == mode
