"""What the CLI tells a person to start: a dispatcher for the agents' runs, a worker
for the rest."""

from __future__ import annotations

import pytest

from tether.cli._format import AGENT_RUNS, start_hint


def test_the_agents_runs_name_is_the_dispatchers() -> None:
    pytest.importorskip("tether.agents")
    from tether.agents import ISSUE_WORKFLOW

    assert AGENT_RUNS == ISSUE_WORKFLOW  # kept apart so the CLI needs no agents extra


def test_an_agents_run_is_driven_by_a_dispatcher_not_a_worker() -> None:
    # before: `tether runs show` told to start `tether worker --app FILE.py:app`, which
    # has no issue workflow to drive it
    assert start_hint(AGENT_RUNS, "default") == "`tether agents run` beside its WORKFLOW.md"
    assert start_hint("greet") == "`tether worker --app FILE.py:app`"
    assert start_hint("greet", "slow") == "`tether worker --app FILE.py:app -q slow`"
