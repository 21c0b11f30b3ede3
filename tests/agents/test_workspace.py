"""Workspaces: naming, path safety, hooks and their failure semantics (real `sh`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

import pytest

from tether.agents import WorkspaceError, WorkspaceManager, check_inside, workspace_key
from tether.agents._config import HooksSettings

from ._procs import alive


def test_names_keep_safe_identifiers_and_hash_the_rest() -> None:
    assert workspace_key("ENG-12") == "ENG-12"
    assert (
        workspace_key("acme/api#7").startswith("acme_api_7--")
        and len(workspace_key("acme/api#7")) == 28
    )
    assert workspace_key("a/b") != workspace_key("a_b")  # no collision after sanitising
    for bad in ("..", ".", "../../etc", "/etc/passwd"):
        assert "/" not in workspace_key(bad) and workspace_key(bad) not in {".", ".."}


async def test_a_very_long_identifier_gets_a_workspace_of_its_own(tmp_path: Path) -> None:
    """Before: the folder was named after the whole identifier, and past 255 bytes (the
    marker beside it adds 18) every attempt failed on "File name too long", retried
    until a person was asked."""
    m = WorkspaceManager(tmp_path / "root", HooksSettings())
    first, second = "L" * 300 + "-1", "L" * 300 + "-2"
    one, two = await m.ensure(first), await m.ensure(second)
    assert one.path != two.path and one.path.is_dir() and two.path.is_dir()
    assert len(one.key) <= 237 and one.key.startswith("L" * 100)
    assert workspace_key("E" * 237) == "E" * 237  # what fitted before keeps its name
    assert await m.remove(one.path) and not one.path.exists()


@pytest.mark.parametrize("ident", ["../escape", "/abs/path", "..", "."])
async def test_escaping_identifiers_stay_inside_the_root(tmp_path: Path, ident: str) -> None:
    ws = await WorkspaceManager(tmp_path / "root", HooksSettings()).ensure(ident)
    assert ws.path.parent == (tmp_path / "root").resolve()


def test_paths_outside_the_root_and_symlink_escapes_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "link")
    with pytest.raises(WorkspaceError) as e1:
        check_inside(root, root / ".." / "outside")
    assert e1.value.code == "workspace_outside_root"
    with pytest.raises(WorkspaceError) as e2:
        check_inside(root, root / "link")
    assert e2.value.code == "workspace_symlink_escape"
    with pytest.raises(WorkspaceError) as e3:
        check_inside(root, root)
    assert e3.value.code == "workspace_equals_root"


async def test_hooks_order_and_failure_semantics(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    hooks = HooksSettings(
        after_create=f"echo after_create >> {log}",
        before_run=f"echo before_run >> {log}",
        after_run=f"echo after_run >> {log}; exit 3",
        before_remove=f"echo before_remove >> {log}; exit 1",
    )
    m = WorkspaceManager(tmp_path / "root", hooks)
    ws = await m.ensure("A-1")
    assert ws.created_now and not (await m.ensure("A-1")).created_now  # after_create once
    await m.before_run(ws.path)
    result = await m.after_run(ws.path)
    assert result is not None and result.exit_code == 3  # logged, not raised
    assert await m.remove(ws.path) and not ws.path.exists()  # before_remove failed: removed anyway
    assert log.read_text().split() == ["after_create", "before_run", "after_run", "before_remove"]


async def test_a_failing_after_create_removes_the_new_folder_and_fails(tmp_path: Path) -> None:
    m = WorkspaceManager(tmp_path / "root", HooksSettings(after_create="echo nope; exit 2"))
    with pytest.raises(WorkspaceError) as err:
        await m.ensure("A-1")
    assert err.value.code == "hook_failed" and "nope" in str(err.value)
    assert not (tmp_path / "root" / "A-1").exists()


async def test_a_failing_after_create_kills_its_child_before_removing_the_folder(
    tmp_path: Path,
) -> None:
    """Before: an `after_create` exiting non-zero (not timing out) had the new folder
    removed while a background child it started (a ``git clone &``) went on running,
    free to write into the folder again; now its process group is killed first."""
    pid = tmp_path / "bg.pid"
    script = (
        f"(while true; do echo x >> $PWD/f 2>/dev/null; sleep 0.05; done) & echo $! > {pid}; exit 3"
    )
    m = WorkspaceManager(tmp_path / "root", HooksSettings(after_create=script, timeout_ms=60_000))
    try:
        with pytest.raises(WorkspaceError) as err:
            await asyncio.wait_for(m.ensure("A-1"), 60)
        assert err.value.code == "hook_failed"
        assert not alive(int(pid.read_text())) and not (tmp_path / "root" / "A-1").exists()
    finally:
        _kill(pid)


async def test_a_failing_hook_is_explained_by_the_end_of_its_output(tmp_path: Path) -> None:
    """A verbose hook (``npm ci`` ...) says why it failed last. Before: the first 2,048
    bytes were kept, so the error recorded for the attempt (and shown by `agents
    status`) was a line of progress, never the cause."""
    script = "for i in $(seq 1 500); do echo progress line $i; done; echo 'ERR! the cause'; exit 1"
    m = WorkspaceManager(tmp_path / "root", HooksSettings(before_run=script))
    ws = await m.ensure("A-1")
    with pytest.raises(WorkspaceError) as err:
        await m.before_run(ws.path)
    assert err.value.code == "hook_failed" and "ERR! the cause" in str(err.value)
    result = await m.run_hook("before_run", ws.path)
    assert len(result.output.encode()) <= 2048 and result.output.endswith("ERR! the cause\n")


async def test_a_hook_past_its_timeout_is_killed(tmp_path: Path) -> None:
    m = WorkspaceManager(tmp_path / "root", HooksSettings(before_run="sleep 30", timeout_ms=200))
    ws = await m.ensure("A-1")
    with pytest.raises(WorkspaceError) as err:
        await m.before_run(ws.path)
    assert err.value.code == "hook_timeout"


async def test_the_sweep_removes_terminal_old_and_oversize_but_never_busy(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    m = WorkspaceManager(root, HooksSettings())
    for name, age in (("old", 10), ("busy", 10), ("done", 0), ("big", 1), ("new", 0)):
        ws = await m.ensure(name)
        (ws.path / "f").write_bytes(b"x" * (3 * 1024 * 1024 if name == "big" else 10))
        t = 1_000_000 - age * 86400
        os.utime(ws.path, (t, t))
    doomed = m.sweep(
        remove_keys={"done"}, busy={"busy"}, max_age_days=5, max_total_mb=1, now=1_000_000
    )
    assert {p.name for p in doomed} == {"old", "done", "big"}


async def test_only_folders_the_dispatcher_created_are_ever_removed(tmp_path: Path) -> None:
    """A root shared with other folders (say the project itself): the retention chore
    and every removal leave alone what the dispatcher did not create and mark."""
    root = tmp_path / "project"
    m = WorkspaceManager(root, HooksSettings(before_remove="echo bye"))
    ours = (await m.ensure("ENG-1")).path
    for name in (".git", "src", "docs", "ENG-2"):  # ENG-2: a workspace's name, no marker
        (root / name).mkdir(parents=True)
        (root / name / "keep.txt").write_text("precious")
    old = 1_000_000 - 90 * 86400
    for p in root.iterdir():
        os.utime(p, (old, old))
    doomed = m.sweep(
        remove_keys={"ENG-2", "src"}, busy=set(), max_age_days=30, max_total_mb=0.000001,
        now=1_000_000,
    )  # fmt: skip
    assert doomed == [ours]
    for name in ("src", ".git", "ENG-2"):
        assert not await m.remove(root / name)
    assert await m.remove(ours) and not ours.exists()
    assert sorted(p.name for p in root.iterdir()) == [".git", "ENG-2", "docs", "src"]
    assert (root / ".git" / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize(
    ("root", "why"),
    [("'/'", "is /"), ("''", "is empty"), ("'.'", "the folder of WORKFLOW.md"),
     ("'..'", "or one above it"), ("'~'", "is ")],
)  # fmt: skip
def test_a_root_holding_more_than_workspaces_is_refused(
    tmp_path: Path, root: str, why: str
) -> None:
    from tether.agents import WorkflowFileError, parse_workflow

    text = f"---\ntracker: {{kind: memory}}\nworkspace: {{root: {root}}}\n---\nhi"
    with pytest.raises(WorkflowFileError) as err:
        parse_workflow(text, path=tmp_path / "proj" / "WORKFLOW.md")
    assert err.value.code == "invalid_config"
    assert "workspace.root" in str(err.value) and why in str(err.value)
    assert parse_workflow(text.replace(root, "ws"), path=tmp_path / "proj" / "WORKFLOW.md")


async def test_removing_a_workspace_kills_the_agent_left_working_in_it(tmp_path: Path) -> None:
    """The agent of a dispatcher that was killed is not left working in a folder that
    is deleted under it (the retention chore, a terminal issue)."""
    import subprocess
    import sys

    from tether.agents._workspace import record_agent
    from tether.testing import eventually_sync

    m = WorkspaceManager(tmp_path / "root", HooksSettings())
    ws = await m.ensure("ORPHAN-1")
    agent = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], cwd=ws.path,
        start_new_session=True,
    )  # fmt: skip
    try:
        record_agent(ws.path, agent.pid)
        assert await m.remove(ws.path)
        eventually_sync(lambda: agent.poll() is not None, timeout=60)
        assert not ws.path.exists()
    finally:
        agent.kill()
        agent.wait()


def _kill(pidfile: Path) -> None:
    import signal

    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


async def test_a_hook_is_done_when_its_shell_exits_whatever_its_children_hold(
    tmp_path: Path,
) -> None:
    """A background child holding the hook's output (a detached one too) neither
    holds the hook up nor turns its exit 0 into a time-out."""
    pids = [tmp_path / "bg.pid", tmp_path / "detached.pid"]
    script = f"sleep 30 & echo $! > {pids[0]}; setsid sleep 30 & echo $! > {pids[1]}; echo started"
    m = WorkspaceManager(tmp_path / "root", HooksSettings(before_run=script, timeout_ms=20_000))
    ws = await m.ensure("A-1")
    try:
        result = await asyncio.wait_for(m.run_hook("before_run", ws.path), 60)
        assert result.ok and result.output.strip() == "started"
    finally:
        for p in pids:
            _kill(p)


async def test_a_hook_timeout_holds_when_a_detached_child_keeps_its_output(
    tmp_path: Path,
) -> None:
    pid = tmp_path / "detached.pid"
    script = f"setsid sleep 30 >/dev/stdout 2>&1 & echo $! > {pid}; exec sleep 30"
    m = WorkspaceManager(tmp_path / "root", HooksSettings(before_run=script, timeout_ms=300))
    ws = await m.ensure("A-1")
    try:
        result = await asyncio.wait_for(m.run_hook("before_run", ws.path), 60)
        assert result.exit_code is None  # killed at the limit, and said so
    finally:
        _kill(pid)


async def test_a_cancelled_hook_is_killed_with_its_process_group(tmp_path: Path) -> None:
    """A dispatcher stopping (its step cancelled) does not leave the hook running."""
    from tether.testing import eventually

    pid = tmp_path / "hook.pid"
    m = WorkspaceManager(
        tmp_path / "root",
        HooksSettings(before_run=f"sleep 60 & echo $! > {pid}; wait", timeout_ms=600_000),
    )
    ws = await m.ensure("A-1")
    hook = asyncio.ensure_future(m.before_run(ws.path))
    try:
        await eventually(lambda: pid.exists() and pid.read_text().strip() != "", timeout=60)
        child = int(pid.read_text())
        hook.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hook
        await eventually(lambda: not alive(child), timeout=60)
    finally:
        _kill(pid)


async def test_stopping_a_run_kills_the_hook_a_killed_dispatcher_left(tmp_path: Path) -> None:
    """A hook's process group is recorded beside the workspace while it runs, so
    `tether agents stop` and a dispatcher taking the run over (`reap_orphan`) kill it."""
    from tether.agents._workspace import reap_orphan
    from tether.testing import eventually

    pid = tmp_path / "hook.pid"
    m = WorkspaceManager(
        tmp_path / "root",
        HooksSettings(before_run=f"echo $$ > {pid}; exec sleep 60", timeout_ms=600_000),
    )
    ws = await m.ensure("A-1")
    hook = asyncio.ensure_future(m.before_run(ws.path))
    try:
        await eventually(lambda: pid.exists() and pid.read_text().strip() != "", timeout=60)
        assert await reap_orphan(ws.path)
        with pytest.raises(WorkspaceError):  # killed: the hook failed
            await asyncio.wait_for(hook, 60)
        assert not alive(int(pid.read_text()))
    finally:
        _kill(pid)


async def test_a_workspace_of_an_identifier_starting_with_a_dot_is_removed(
    tmp_path: Path,
) -> None:
    """GitHub's `.github` repository: its issue `.github#5` gets a workspace that is no
    hidden folder, and it is removed like any other (by the chore and by its path)."""
    assert not workspace_key(".github#5").startswith(".")
    assert not workspace_key(".hidden").startswith(".") and workspace_key(".hidden") != "_hidden"
    m = WorkspaceManager(tmp_path / "root", HooksSettings())
    ws = (await m.ensure(".github#5")).path
    key = ws.name
    assert m.sweep(remove_keys={key}, busy=set(), max_age_days=None, max_total_mb=None) == [ws]
    assert await m.remove(ws) and not ws.exists()


async def test_a_dotted_workspace_an_earlier_tether_made_is_used_and_removed(
    tmp_path: Path,
) -> None:
    """A tether before the rule named it `.github_5--<hash>` (and marked it so): the
    issue goes on working in it, and it is removed as the issue's workspace."""
    root = tmp_path / "root"
    new = workspace_key(".github#5")
    old = "." + new[1:]  # the leading `.` the older rule kept
    (root / old).mkdir(parents=True)
    (root / f".{old}.tether-workspace").write_text(
        json.dumps({"identifier": ".github#5", "key": old})
    )
    m = WorkspaceManager(root, HooksSettings())
    assert m.path_for(".github#5") == root / old
    ws = await m.ensure(".github#5")
    assert ws.path == (root / old).resolve() and not ws.created_now
    assert await m.remove(ws.path) and not (root / old).exists()
    assert m.path_for(".github#5") == root / new  # gone: the rule of today from now on


async def test_a_workspace_under_an_earlier_root_is_removed_by_its_recorded_path(
    tmp_path: Path,
) -> None:
    """`workspace.root` changed since the path was recorded: a workspace the dispatcher
    made there is still removed (`before_remove` first); a folder it did not make is
    refused, and `discard` says so without raising."""
    log = tmp_path / "hooks.log"
    before = WorkspaceManager(tmp_path / "ws1", HooksSettings())
    ws = (await before.ensure("A-1")).path
    after = WorkspaceManager(tmp_path / "ws2", HooksSettings(before_remove=f"pwd >> {log}"))
    assert await after.remove(ws) and not ws.exists()
    assert log.read_text().strip() == str(ws)
    stranger = tmp_path / "ws1" / "B-1"
    stranger.mkdir()
    with pytest.raises(WorkspaceError):
        await after.remove(stranger)
    assert not await after.discard(stranger) and stranger.is_dir()


@pytest.mark.parametrize(
    ("hook", "ends"),
    [("before_run", "exit 1"), ("after_run", "exit 4"), ("before_remove", "exit 2"),
     ("before_remove", "exit 0"), ("before_run", "sleep 60")],
)  # fmt: skip
async def test_a_hook_that_stops_leaves_no_child_behind(
    tmp_path: Path, hook: str, ends: str
) -> None:
    """Before: only a failing `after_create` had its group killed; a failing
    `before_run` (the attempt aborted) or `after_run`, and any `before_remove` (its
    folder deleted next), left their background children running (a timed-out
    hook's were killed already: the last case keeps it so)."""
    from tether.testing import eventually

    pid = tmp_path / "bg.pid"
    script = f"sleep 900 & echo $! > {pid}; {ends}"  # the child outlives the test by far
    hooks = HooksSettings(**{hook: script}, timeout_ms=60_000 if ends != "sleep 60" else 500)
    m = WorkspaceManager(tmp_path / "root", hooks)
    ws = await m.ensure("A-1")
    try:
        if hook == "before_run":
            with pytest.raises(WorkspaceError):
                await asyncio.wait_for(m.before_run(ws.path), 60)
        elif hook == "after_run":
            result = await asyncio.wait_for(m.after_run(ws.path), 60)
            assert result is not None and not result.ok
        else:
            assert await asyncio.wait_for(m.remove(ws.path), 60) and not ws.path.exists()
        child = int(pid.read_text())
        await eventually(lambda: not alive(child), timeout=30)
    finally:
        _kill(pid)


async def test_a_succeeding_hook_may_leave_the_daemon_it_started(tmp_path: Path) -> None:
    """A `before_run` starting a server for the agent and exiting 0 is a pattern of
    its own (Symphony sets nothing against it): its child is left running."""
    pid = tmp_path / "bg.pid"
    m = WorkspaceManager(tmp_path / "root", HooksSettings(before_run=f"sleep 60 & echo $! > {pid}"))
    ws = await m.ensure("A-1")
    try:
        await asyncio.wait_for(m.before_run(ws.path), 60)
        assert alive(int(pid.read_text()))
    finally:
        _kill(pid)
