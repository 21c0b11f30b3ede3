"""Workspaces: naming, path safety, hooks and their failure semantics (real `sh`)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tether.agents import WorkspaceError, WorkspaceManager, check_inside, workspace_key
from tether.agents._config import HooksSettings


def test_names_keep_safe_identifiers_and_hash_the_rest() -> None:
    assert workspace_key("ENG-12") == "ENG-12"
    assert (
        workspace_key("acme/api#7").startswith("acme_api_7--")
        and len(workspace_key("acme/api#7")) == 28
    )
    assert workspace_key("a/b") != workspace_key("a_b")  # no collision after sanitising
    for bad in ("..", ".", "../../etc", "/etc/passwd"):
        assert "/" not in workspace_key(bad) and workspace_key(bad) not in {".", ".."}


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


async def test_a_hook_past_its_timeout_is_killed(tmp_path: Path) -> None:
    m = WorkspaceManager(tmp_path / "root", HooksSettings(before_run="sleep 30", timeout_ms=200))
    ws = await m.ensure("A-1")
    with pytest.raises(WorkspaceError) as err:
        await m.before_run(ws.path)
    assert err.value.code == "hook_timeout"


def test_the_sweep_removes_terminal_old_and_oversize_but_never_busy(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for name, age in (("old", 10), ("busy", 10), ("done", 0), ("big", 1), ("new", 0)):
        (root / name).mkdir(parents=True)
        (root / name / "f").write_bytes(b"x" * (3 * 1024 * 1024 if name == "big" else 10))
        t = 1_000_000 - age * 86400
        os.utime(root / name, (t, t))
    m = WorkspaceManager(root, HooksSettings())
    doomed = m.sweep(
        remove_keys={"done"}, busy={"busy"}, max_age_days=5, max_total_mb=1, now=1_000_000
    )
    assert {p.name for p in doomed} == {"old", "done", "big"}


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
        eventually_sync(lambda: agent.poll() is not None, timeout=10)
        assert not ws.path.exists()
    finally:
        agent.kill()
        agent.wait()
