"""The dispatcher as real processes: SIGKILL and restart, two dispatchers on one
PostgreSQL database, an issue closed under a running agent. Agents are real
subprocesses that log their starts and ends and hold a per-issue `flock`."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.testing import eventually_sync

from .._postgres import PostgresServer
from ._procs import alive, events, of, project, start, stop

TIMEOUT = 90.0


def _runs(url: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        async with tether.App(url) as app:
            return {
                r.workflow_id: r
                for r in await app.alist_runs(limit=1000)
                if r.workflow_id.startswith("agent:")
            }

    return asyncio.run(fetch())


def _no_overlap(where: Path) -> None:
    """No two agents of one issue ever worked at once: none found the issue's flock
    taken, and by the log no start falls inside another agent's start..end."""
    log = events(where)
    assert [e for e in log if e["event"] == "overlap"] == []
    for issue in {e["issue"] for e in log}:
        spans = []
        starts = [e for e in log if e["issue"] == issue and e["event"] == "start"]
        for s in starts:
            ends = [
                e["t"]
                for e in log
                if e["pid"] == s["pid"] and e["event"] in ("end", "fail") and e["t"] >= s["t"]
            ]
            spans.append((s["t"], min(ends) if ends else None))
        spans.sort()
        for (_, end), (nxt, _) in itertools.pairwise(spans):
            assert end is None or end <= nxt, f"{issue}: two agents at once"


@pytest.mark.timeout(240)
def test_sigkill_mid_run_then_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    where = project(tmp_path, ["A-1", "B-1"], database_url=url)
    (where / "block-A-1").touch()  # A-1's agent works until told to finish
    (where / "fail-B-1").write_text("1")  # B-1's first attempt fails: a retry timer
    first = start(where, "first")
    try:
        eventually_sync(lambda: of(where, "A-1", "start"), timeout=TIMEOUT)
        eventually_sync(lambda: _phase(url, "agent:file:B-1") == "retrying", timeout=TIMEOUT)
        failed_at = of(where, "B-1", "fail")[0]["t"]
    finally:
        stop(first, kill=True)  # mid-run: A-1's agent is left running, an orphan
    orphan = of(where, "A-1", "start")[0]["pid"]
    second = start(where, "second")
    try:
        # the interrupted attempt runs again (its orphaned agent killed first) ...
        eventually_sync(lambda: len(of(where, "A-1", "start")) == 2, timeout=TIMEOUT)
        assert of(where, "A-1", "start")[1]["dispatcher"] == "second"
        assert not alive(orphan)
        # ... and B-1's retry fired when its timer, recorded before the crash, was due
        # (10 s after the failure: a timer the restarted dispatcher did not forget,
        # nor fire early, nor replace by a new dispatch)
        eventually_sync(lambda: of(where, "B-1", "end"), timeout=TIMEOUT)
        retried = of(where, "B-1", "start")[1]["t"]
        assert failed_at + 10.0 - 0.5 <= retried
        assert of(where, "B-1", "start")[1]["dispatcher"] == "second"
        (where / "block-A-1").unlink()
        eventually_sync(lambda: of(where, "A-1", "end"), timeout=TIMEOUT)
        eventually_sync(
            lambda: all(r.status.terminal for r in _runs(url).values()), timeout=TIMEOUT
        )
    finally:
        stop(second)
    _no_overlap(where)
    assert (where / "ISSUES.md").read_text().count("- status: review") == 2
    runs = _runs(url)
    assert sorted(runs) == ["agent:file:A-1", "agent:file:B-1"]  # never dispatched again
    # handed off: the run ends by itself, or is stopped by a tick as no longer active
    assert {r.status.value for r in runs.values()} <= {"completed", "cancelled"}
    assert len(of(where, "B-1", "start")) == 2 and len(of(where, "A-1", "start")) == 2


def _phase(url: str, run_id: str) -> str | None:
    run = _runs(url).get(run_id)
    return None if run is None else _state(run.state).get("phase")


def _retry_attempt(url: str, workflow_id: str) -> int:
    """The attempt the run's last retry waits to make (0: none yet)."""
    return int(_state(_runs(url)[workflow_id].state).get("attempt") or 0)


def _state(text: str | None) -> dict[str, Any]:
    """The run's recorded state; `null` (a run whose state was never set yet, or
    set to None) reads as empty."""
    value = json.loads(text) if text else None
    return value if isinstance(value, dict) else {}


@pytest.mark.timeout(240)
def test_two_dispatchers_on_postgresql_never_run_one_issue_twice(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.url_with_schema(schema)
    issues = [f"P-{n}" for n in range(1, 9)]
    where = project(tmp_path, issues, database_url=url)
    both = [start(where, "one", AGENT_WORK="0.3"), start(where, "two", AGENT_WORK="0.3")]
    try:
        eventually_sync(lambda: all(of(where, i, "end") for i in issues), timeout=TIMEOUT)
        eventually_sync(
            lambda: all(r.status.terminal for r in _runs(url).values()), timeout=TIMEOUT
        )
    finally:
        for proc in both:
            stop(proc)
        postgres.drop_schema(schema)
    _no_overlap(where)
    assert {i: len(of(where, i, "start")) for i in issues} == {i: 1 for i in issues}
    assert (where / "ISSUES.md").read_text().count("- status: review") == len(issues)


@pytest.mark.timeout(180)
def test_an_issue_closed_in_the_tracker_stops_its_agent_within_a_tick(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    where = project(tmp_path, ["C-1"], database_url=url)
    (where / "block-C-1").touch()  # the agent would work forever
    proc = start(where, "only")
    try:
        eventually_sync(lambda: of(where, "C-1", "start"), timeout=TIMEOUT)
        agent = of(where, "C-1", "start")[0]["pid"]
        text = (where / "ISSUES.md").read_text()
        (where / "ISSUES.md").write_text(text.replace("- status: todo", "- status: done"))
        # the agent works forever (its block file stays): only the close stops it, at a
        # tick (polling.interval_ms is 200); 60 s bounds a hang, it measures no speed
        eventually_sync(lambda: not alive(agent), timeout=60)
        eventually_sync(lambda: not (where / "ws" / "C-1").exists(), timeout=60)
        run = _runs(url)["agent:file:C-1"]
        assert run.status.value == "cancelled" and "terminal" in (run.error or "")
    finally:
        stop(proc)
    assert of(where, "C-1", "end") == []


@pytest.mark.timeout(120)
def test_sigterm_stops_the_agent_before_the_dispatcher_exits(tmp_path: Path) -> None:
    """A dispatcher stopped with SIGTERM hands its run back: its agent must be gone by
    then, or it would go on editing the workspace another dispatcher takes over."""
    url = f"sqlite:///{tmp_path}/t.db"
    where = project(tmp_path, ["S-1"], database_url=url, agent="shutdown_grace_ms: 200, ")
    (where / "block-S-1").touch()  # the agent would work forever
    proc = start(where, "only")
    try:
        eventually_sync(lambda: of(where, "S-1", "start"), timeout=TIMEOUT)
        agent = of(where, "S-1", "start")[0]["pid"]
        stop(proc)  # SIGTERM: the grace passes, the turn is cancelled, the run handed back
        assert proc.returncode == 0
        assert "handed back" in (where / "only.out").read_text()
        eventually_sync(lambda: not alive(agent), timeout=60)
    finally:
        (where / "block-S-1").unlink()  # lets a surviving agent end
    assert of(where, "S-1", "end") == []


@pytest.mark.timeout(120)
def test_ctrl_c_during_once_stops_the_agent_before_it_exits(tmp_path: Path) -> None:
    """`agents run --once` interrupted (Ctrl-C) gives the turn its grace, then kills
    the agent and hands the run back; the exit code says interrupted."""
    url = f"sqlite:///{tmp_path}/t.db"
    where = project(tmp_path, ["O-1"], database_url=url, agent="shutdown_grace_ms: 200, ")
    (where / "block-O-1").touch()  # the agent would work forever
    proc = start(where, "only", "--once")
    try:
        eventually_sync(lambda: of(where, "O-1", "start"), timeout=TIMEOUT)
        agent = of(where, "O-1", "start")[0]["pid"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        assert "hand themselves back" in (where / "only.out").read_text()
        eventually_sync(lambda: not alive(agent), timeout=60)
        assert _runs(url)["agent:file:O-1"].status.value == "pending"
    finally:
        (where / "block-O-1").unlink()  # lets a surviving agent end
        stop(proc)
    assert of(where, "O-1", "end") == []


@pytest.mark.timeout(120)
def test_a_second_signal_stops_the_agent_at_once(tmp_path: Path) -> None:
    """The first SIGTERM gives the turn its grace (a minute here); the second cuts it
    short: the agent is killed, the run handed back, the exit code says interrupted."""
    url = f"sqlite:///{tmp_path}/t.db"
    where = project(tmp_path, ["S-2"], database_url=url, agent="shutdown_grace_ms: 60000, ")
    (where / "block-S-2").touch()
    proc = start(where, "only")
    try:
        eventually_sync(lambda: of(where, "S-2", "start"), timeout=TIMEOUT)
        agent = of(where, "S-2", "start")[0]["pid"]
        proc.send_signal(signal.SIGTERM)
        log = where / "only.out"
        eventually_sync(lambda: "a second signal stops them now" in log.read_text(), timeout=30)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
        assert time.monotonic() - started < 30  # not the minute of grace
        text = log.read_text()
        assert "run=agent:file:S-2 status=pending" in text and "Traceback" not in text
        eventually_sync(lambda: not alive(agent), timeout=60)
    finally:
        (where / "block-S-2").unlink()
        stop(proc)
    assert of(where, "S-2", "end") == []


@pytest.mark.timeout(120)
def test_stop_kills_the_agent_a_killed_dispatcher_left_behind(tmp_path: Path) -> None:
    """`tether agents stop` of an issue whose dispatcher was SIGKILLed kills its agent
    (before: the run was cancelled, the agent went on working); the workspace it
    worked in can then be removed without it."""
    url = f"sqlite:///{tmp_path}/t.db"
    where = project(tmp_path, ["K-1"], database_url=url)
    (where / "block-K-1").touch()
    proc = start(where, "only")
    try:
        eventually_sync(lambda: of(where, "K-1", "start"), timeout=TIMEOUT)
        agent = of(where, "K-1", "start")[0]["pid"]
    finally:
        stop(proc, kill=True)  # the agent is left behind, an orphan
    assert alive(agent)
    tether = str(Path(sys.executable).parent / "tether")
    try:
        stopped = subprocess.run(
            [tether, "agents", "stop", "K-1"], cwd=where, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert stopped.returncode == 0, stopped.stderr
        eventually_sync(lambda: not alive(agent), timeout=60)
    finally:
        (where / "block-K-1").unlink()
    assert of(where, "K-1", "end") == []


@pytest.mark.timeout(120)
def test_raising_max_concurrent_agents_in_workflow_md_applies_while_running(
    tmp_path: Path,
) -> None:
    """The running dispatcher takes more agents at once after the edit (before: its
    worker kept the number it started with until a restart)."""
    url = f"sqlite:///{tmp_path}/t.db"
    where = project(tmp_path, ["M-1", "M-2", "M-3"], database_url=url)
    workflow = where / "WORKFLOW.md"
    workflow.write_text(
        workflow.read_text().replace("max_concurrent_agents: 4", "max_concurrent_agents: 1")
    )
    for ident in ("M-1", "M-2", "M-3"):
        (where / f"block-{ident}").touch()
    proc = start(where, "only")
    try:
        eventually_sync(lambda: len(events(where)) >= 1, timeout=TIMEOUT)
        assert len({e["issue"] for e in events(where) if e["event"] == "start"}) == 1
        workflow.write_text(
            workflow.read_text().replace("max_concurrent_agents: 1", "max_concurrent_agents: 3")
        )
        eventually_sync(
            lambda: len({e["issue"] for e in events(where) if e["event"] == "start"}) == 3,
            timeout=30,
        )
    finally:
        for ident in ("M-1", "M-2", "M-3"):
            (where / f"block-{ident}").unlink()
        stop(proc)


@pytest.mark.timeout(180)
def test_a_retry_waiting_for_its_time_gives_its_slot_up(tmp_path: Path) -> None:
    """One agent at a time, agents that finish cleanly and no hand-off: each run's
    continuation retry (1 s) parks it and gives the queue's only slot to the other
    issue (before: it waited holding the slot, and the other one never ran)."""
    url = f"sqlite:///{tmp_path}/t.db"
    where = project(tmp_path, ["P-1", "P-2"], database_url=url)
    workflow = where / "WORKFLOW.md"
    workflow.write_text(
        workflow.read_text()
        .replace(",\n          handoff_state: review}", "}")
        .replace("max_concurrent_agents: 4", "max_concurrent_agents: 1, max_retry_backoff_ms: 1000")
    )
    proc = start(where, "only")
    try:
        eventually_sync(
            lambda: len(of(where, "P-1", "end")) >= 2 and len(of(where, "P-2", "end")) >= 2,
            timeout=TIMEOUT,
        )
    finally:
        stop(proc)
    log = events(where)  # never two agents at once
    starts = [e["t"] for e in log if e["event"] == "start"]
    ends = [e["t"] for e in log if e["event"] == "end"]
    assert all(e <= s for s, e in zip(starts[1:], ends, strict=False))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kill", [True, False], ids=["sigkill", "sigterm"])
def test_an_after_create_cut_short_runs_again_before_the_agent(tmp_path: Path, kill: bool) -> None:
    """A dispatcher killed (or stopped) while `after_create` runs (a long clone, say)
    leaves a half-made folder: the dispatcher that takes the run over makes it again
    and runs the hook to its end before the agent starts (before: the folder existed,
    so the hook never ran again and the agent worked in a half-cloned workspace)."""
    url = f"sqlite:///{tmp_path}/t.db"
    hook = (  # the first run of the hook never ends; the next one does
        "n=$(cat ../../hook.log 2>/dev/null | wc -l); echo run >> ../../hook.log; "
        "touch cloning; if [ $n = 0 ]; then while true; do sleep 0.05; done; fi; touch cloned"
    )
    where = project(
        tmp_path,
        ["H-1"],
        database_url=url,
        extra=f'hooks: {{after_create: "{hook}", timeout_ms: 60000}}',
        agent="shutdown_grace_ms: 0, ",
    )
    first = start(where, "first")
    try:
        eventually_sync(lambda: (where / "ws" / "H-1" / "cloning").exists(), timeout=TIMEOUT)
    finally:
        stop(first, kill=kill)
    second = start(where, "second")
    try:
        eventually_sync(lambda: of(where, "H-1", "end"), timeout=TIMEOUT)
    finally:
        stop(second)
    assert (where / "hook.log").read_text().count("run") == 2
    assert (where / "ws" / "H-1" / "cloned").exists()


def _most_at_once(where: Path) -> int:
    """The most agents that worked at once, by their logged start .. end (or fail)."""
    log = events(where)
    edges = []
    for s in (e for e in log if e["event"] == "start"):
        ends = [
            e["t"]
            for e in log
            if e["pid"] == s["pid"] and e["event"] in ("end", "fail") and e["t"] >= s["t"]
        ]
        edges += [(s["t"], 1), (min(ends) if ends else float("inf"), -1)]
    most = now = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        now += step
        most = max(most, now)
    return most


def _cli(where: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tether = str(Path(sys.executable).parent / "tether")
    return subprocess.run(
        [tether, "agents", *args], cwd=where, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


@pytest.mark.timeout(240)
def test_a_states_cap_holds_against_a_run_started_elsewhere(tmp_path: Path) -> None:
    """`max_concurrent_agents_by_state: {todo: 1}`, two dispatcher processes and a
    person's `tether agents retry` (a third process) that queues a run of a todo
    issue while another todo issue's agent works. Before: the cap was only counted
    by a tick before it dispatched; a run queued by anything else (a retry, a tick of
    another process that counted at the same moment) started its agent over the cap.
    Now each attempt takes its state's slot under a mutex shared by every process:
    that run waits (no available orchestrator slots) until the slot is free."""
    url = f"sqlite:///{tmp_path}/t.db"
    where = project(
        tmp_path,
        ["A-1", "B-1"],
        database_url=url,
        agent="max_retry_backoff_ms: 500, max_concurrent_agents_by_state: {todo: 1}, ",
    )
    issues = where / "ISSUES.md"
    text = issues.read_text()
    issues.write_text(text.replace("- status: todo", "- status: backlog", 1))  # A-1 waits
    (where / "block-A-1").touch()
    (where / "block-B-1").touch()
    both = [start(where, "one"), start(where, "two")]
    try:
        eventually_sync(lambda: of(where, "B-1", "start"), timeout=TIMEOUT)
        stopped = _cli(where, "stop", "B-1")  # held: a person stopped it
        assert stopped.returncode == 0, stopped.stderr
        eventually_sync(lambda: not alive(of(where, "B-1", "start")[0]["pid"]), timeout=30)
        issues.write_text(text)  # A-1 comes to todo: the slot is free, it is dispatched
        eventually_sync(lambda: of(where, "A-1", "start"), timeout=TIMEOUT)
        retried = _cli(where, "retry", "B-1")  # B-1 again, while A-1 holds todo's slot
        assert retried.returncode == 0, retried.stderr

        def waits_or_started() -> bool:
            st = _state(_runs(url)["agent:file:B-1:2"].state)
            no_slot = st.get("error") == "no available orchestrator slots"
            return no_slot or len(of(where, "B-1", "start")) > 1

        eventually_sync(waits_or_started, timeout=TIMEOUT)
        first = _retry_attempt(url, "agent:file:B-1:2")

        def refused_again() -> bool:  # three more of its retries found no slot
            return len(of(where, "B-1", "start")) > 1 or (
                _retry_attempt(url, "agent:file:B-1:2") >= first + 3
            )

        eventually_sync(refused_again, timeout=TIMEOUT)
        assert len(of(where, "B-1", "start")) == 1, "B-1 started beside A-1, over the cap"
        (where / "block-A-1").unlink()
        (where / "block-B-1").unlink()
        eventually_sync(lambda: of(where, "B-1", "end"), timeout=TIMEOUT)  # then its turn
    finally:
        for proc in both:
            stop(proc)
    # (the first B-1 agent was killed: it logged no end) its second starts after A-1's
    assert of(where, "B-1", "start")[1]["t"] >= of(where, "A-1", "end")[0]["t"]


@pytest.mark.timeout(240)
def test_two_dispatchers_keep_a_states_cap_while_retries_and_dispatches_contend(
    tmp_path: Path,
) -> None:
    """`max_concurrent_agents_by_state: {todo: 1}` with two dispatcher processes on one
    database, agents failing (short retries) and working in turn: never two agents on
    todo issues at once, however their ticks and due retries interleave."""
    url = f"sqlite:///{tmp_path}/t.db"
    issues = [f"Q-{n}" for n in range(1, 7)]
    where = project(
        tmp_path,
        issues,
        database_url=url,
        agent="max_retry_backoff_ms: 300, max_concurrent_agents_by_state: {todo: 1}, ",
    )
    for ident in issues:
        (where / f"fail-{ident}").write_text("2")  # two failed attempts, then the work
    both = [start(where, "one", AGENT_WORK="0.3"), start(where, "two", AGENT_WORK="0.3")]
    try:
        eventually_sync(lambda: all(of(where, i, "end") for i in issues), timeout=TIMEOUT * 2)
    finally:
        for proc in both:
            stop(proc)
    _no_overlap(where)
    assert _most_at_once(where) == 1
