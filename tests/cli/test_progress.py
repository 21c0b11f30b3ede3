"""The live display of `tether run`: a bar per running stage, fed by run events."""

from __future__ import annotations

from tether.cli._progress import Progress


def test_a_bar_per_running_stage_until_it_ends() -> None:
    p = Progress("r1")
    p("r1", "stage.started", "extract", {"stage": "extract", "group": 1, "attempt": 1})
    p("r1", "stage.progress", "reading pages", {"stage": "extract", "fraction": 0.5})
    p("r1", "stage.started", "embed", {"stage": "embed", "group": 2, "attempt": 1})
    p("r1", "stage.suspended", "embed", {"stage": "embed", "state": {}})
    lines = [line.plain for line in p.stage_lines()]
    assert lines[0].startswith("  extract") and "[##########          ]  50%" in lines[0]
    assert lines[0].endswith("reading pages")
    assert "suspended waiting for its batch" in lines[1]
    p("r1", "stage.completed", "extract", {"stage": "extract", "seconds": 1.0})
    assert [line.plain.split()[0] for line in p.stage_lines()] == ["embed"]
    p("r1", "stage.log", "ignored", None)  # no stage named: nothing to draw
    assert len(p.stage_lines()) == 1
