"""Workspaces: one folder per issue under a root, and the hooks around them.

Naming (Symphony's rule): the identifier with every character outside
``[A-Za-z0-9._-]`` replaced by ``_``, and a leading ``.`` too (no hidden
folder, never ``.`` or ``..``); if that changed anything, ``--`` and the first
16 hex digits of the sha256 of the original identifier are appended, so two
identifiers never share a folder. (A tether before this rule kept a leading
``.``: such a workspace is still used and removed as its issue's.) Before any
use the path is checked to be inside the root with symlinks resolved
(`workspace_outside_root`, `workspace_symlink_escape`, `workspace_equals_root`;
a file where the folder belongs is refused, `workspace_not_a_folder`, never deleted).

Only folders the dispatcher created are ever removed: `ensure` writes a marker
beside each folder it creates (``.<key>.tether-workspace``, naming the issue,
and saying so while `after_create` has not finished: a folder whose hook was
cut short, by a dispatcher killed or stopped during it, is made again),
and `remove` and the retention sweep leave alone any folder without one (a
root shared with other files loses nothing but workspaces).

Hooks run as ``sh -lc <script>`` in the workspace, each within
``hooks.timeout_ms`` of the shell's exit (the process group is killed at the
limit, and when the hook's caller is cancelled), their output cut to its last
2,048 bytes in the log (where a failing command says why). A background child
a hook leaves behind does not hold the hook up: its output goes to a file, not
a pipe waited on. Failure semantics: `after_create` and `before_run` abort the
attempt (a folder just created is removed again); `after_run` and `before_remove`
are logged and ignored. A hook that fails or times out has what is left of its
process group killed, whichever hook it is: a child it started (``sleep 60 &``, a
``git clone &``) must not work on in a folder about to be removed or for an
attempt that stopped. A hook that succeeds may leave a daemon it meant to start
(a dev server for the agent; Symphony says nothing against it), except
`before_remove`: its folder goes next, so its group is killed once its shell exits.

Such a daemon lives only as long as its workspace. Its group is recorded beside
the folder (``.<key>.daemons``, with its start time: a reused pid is never taken
for it; a file, so a restarted dispatcher still knows it), and removing the
workspace, after `before_remove`, stops those groups and, on Linux, any other
process whose working folder is inside the workspace (one a hook detached with
``setsid``): SIGTERM, then SIGKILL for what is left after `stop_grace` seconds.
Never the dispatcher or its parents, nor a process with a terminal (a person's
shell looking into the folder); a kill that fails is logged and the removal
goes on. A daemon that left its folder and its group (``setsid`` then ``cd /``)
is beyond this.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ._config import HooksSettings
from ._errors import WorkspaceError
from ._issue import scrub_unstorable

__all__ = [
    "HookResult",
    "Workspace",
    "WorkspaceManager",
    "check_inside",
    "is_workspace",
    "kill_group",
    "reap_orphan",
    "record_agent",
    "run_shell",
    "start_time",
    "stop_leftovers",
    "until_gone",
    "workspace_key",
]

log = logging.getLogger("tether.agents")

OUTPUT_LIMIT = 2048
# seconds a hook's daemon has, from SIGTERM, to end before it is killed (its workspace going)
STOP_GRACE = 5.0
# a folder name is at most 255 bytes, and its marker beside it adds 18 (".<key>.tether-workspace")
MAX_KEY = 237
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def workspace_key(identifier: str) -> str:
    """The folder name of an issue's workspace (never hidden: no leading ``.``; at most
    `MAX_KEY` characters, a longer one cut and hashed)."""
    safe = _UNSAFE.sub("_", identifier)
    if safe.startswith("."):  # `.github#5` (GitHub's `.github` repository), `.`, `..`
        safe = "_" + safe[1:]
    if safe == identifier and safe and len(safe) <= MAX_KEY:
        return safe
    return f"{safe[: MAX_KEY - 18]}--{_digest(identifier)}"


def _legacy_key(identifier: str) -> str:
    """The folder name an earlier tether gave: a leading ``.`` kept."""
    safe = _UNSAFE.sub("_", identifier)
    if safe == identifier and safe not in {"", ".", ".."}:
        return safe
    return f"{safe}--{_digest(identifier)}"


def _digest(identifier: str) -> str:
    return hashlib.sha256(identifier.encode()).hexdigest()[:16]


def check_inside(root: Path, path: Path) -> Path:
    """`path` with symlinks resolved, if it lies strictly inside `root`; else WorkspaceError."""
    real_root = root.resolve()
    lexical = Path(os.path.normpath(path if path.is_absolute() else real_root / path))
    if lexical in (real_root, root):
        raise WorkspaceError(f"workspace {path} is the root itself", code="workspace_equals_root")
    if not (lexical.is_relative_to(real_root) or lexical.is_relative_to(root)):
        raise WorkspaceError(
            f"workspace {path} is outside the root {real_root}", code="workspace_outside_root"
        )
    real = path.resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise WorkspaceError(
            f"workspace {path} resolves to {real} through a symlink, outside the root "
            f"{real_root}; remove the link",
            code="workspace_symlink_escape",
        )
    return real


def _marker(path: Path) -> Path:
    # beside the folder, not in it: an agent committing its tree must not see it
    return path.parent / f".{path.name}.tether-workspace"


def _mark(path: Path, identifier: str, *, pending: bool = False) -> None:
    """`pending`: `after_create` has not finished yet; a folder still marked so when
    it is next ensured was left half made (a dispatcher killed or stopped during the
    hook) and is made again, so a workspace is never used without its hook done."""
    data = {"identifier": identifier, "key": path.name}
    _marker(path).write_text(json.dumps({**data, "after_create": "pending"} if pending else data))


def _half_made(path: Path) -> bool:
    """The folder is ours and its `after_create` never finished."""
    try:
        data = json.loads(_marker(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("after_create") == "pending" and is_workspace(path)


def is_workspace(path: Path) -> bool:
    """The folder is a workspace the dispatcher created: a name its naming rule
    gives (or gave, before a leading ``.`` was replaced), and the marker it wrote at
    creation naming the same folder."""
    name = path.name
    if name in {"", ".", ".."} or _UNSAFE.search(name):
        return False
    try:
        data = json.loads(_marker(path).read_text())
        ident = str(data["identifier"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return data.get("key") == name and name in {workspace_key(ident), _legacy_key(ident)}


@dataclass(frozen=True)
class Workspace:
    path: Path
    key: str
    created_now: bool


@dataclass(frozen=True)
class HookResult:
    name: str
    exit_code: int | None  # None: killed at the timeout
    output: str  # its last OUTPUT_LIMIT bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class WorkspaceManager:
    """Creates, checks and removes workspaces under `root`, and runs the hooks."""

    def __init__(self, root: Path, hooks: HooksSettings, *, stop_grace: float = STOP_GRACE) -> None:
        self.root = root
        self.hooks = hooks
        self.stop_grace = stop_grace  # see `stop_leftovers`

    def path_for(self, identifier: str) -> Path:
        """Where the issue's workspace is: one an earlier tether named by its older
        rule (a leading ``.`` kept) goes on being used, the work in it not left."""
        path = self.root / workspace_key(identifier)
        legacy = self.root / _legacy_key(identifier)
        if legacy != path and not path.exists() and is_workspace(legacy):
            return legacy
        return path

    async def ensure(self, identifier: str) -> Workspace:
        """The issue's workspace, created if missing (then `after_create` runs; if it
        fails the new folder is removed and the attempt fails)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path_for(identifier)
        check_inside(self.root, path)
        created = False
        if path.is_symlink():
            path.unlink()  # a stray link where the folder belongs (it holds no data)
        elif path.exists() and not path.is_dir():
            # a file of the user's: never deleted (only what the dispatcher made is)
            raise WorkspaceError(
                f"workspace {path} exists and is not a folder: move or remove that file "
                f"(the issue {identifier} works in a folder of that name)",
                code="workspace_not_a_folder",
            )
        if path.is_dir() and _half_made(path):
            await reap_orphan(path)  # the interrupted hook, if it still runs
            await asyncio.to_thread(shutil.rmtree, path, True)
        if not path.exists():
            _mark(path, identifier, pending=bool(self.hooks.after_create))
            path.mkdir()
            created = True
        real = check_inside(self.root, path)
        ws = Workspace(real, path.name, created)
        if created and self.hooks.after_create:
            result = await self.run_hook("after_create", ws.path)
            if not result.ok:
                await stop_leftovers(ws.path, grace=self.stop_grace)  # a child it detached
                shutil.rmtree(ws.path, ignore_errors=True)
                _marker(ws.path).unlink(missing_ok=True)
                raise _hook_error(result)
            _mark(path, identifier)
        return ws

    async def before_run(self, path: Path) -> None:
        check_inside(self.root, path)
        if self.hooks.before_run:
            result = await self.run_hook("before_run", path)
            if not result.ok:
                raise _hook_error(result)

    async def after_run(self, path: Path) -> HookResult | None:
        """Best effort: a failure is logged, never raised."""
        if not self.hooks.after_run or not path.is_dir():
            return None
        return await self.run_hook("after_run", path)

    async def remove(self, path: Path) -> bool:
        """Remove a workspace by its recorded path: its orphaned agent killed, then
        `before_remove` (a failure is logged and the removal proceeds). False if there
        was nothing to remove, or the folder is not one the dispatcher created (no
        marker: it is left alone, whatever its name). One recorded under an earlier
        `workspace.root` is removed too if the dispatcher created it."""
        real = self.recorded(path)
        # an agent a killed dispatcher left behind may still work in it: not any more
        await reap_orphan(real)
        if not real.exists():  # deleted by hand: the daemons recorded for it go all the same
            await stop_leftovers(real, grace=self.stop_grace)
            return False
        if not is_workspace(real):
            log.warning(
                "not removing %s: the dispatcher did not create it (no %s beside it)",
                real,
                _marker(real).name,
                extra={"workspace": str(real)},
            )
            return False
        if self.hooks.before_remove and real.is_dir():
            await self.run_hook("before_remove", real)
        await stop_leftovers(real, grace=self.stop_grace)
        await asyncio.to_thread(shutil.rmtree, real, True)
        _marker(real).unlink(missing_ok=True)
        log.info("workspace removed", extra={"workspace": str(real)})
        return True

    def recorded(self, path: Path) -> Path:
        """`path` with symlinks resolved if it may be used or removed: inside the root,
        or a workspace the dispatcher created under an earlier root (the config changed
        since it was recorded: an attempt in flight keeps its workspace), resolved inside
        its own folder; else WorkspaceError."""
        try:
            return check_inside(self.root, path)
        except WorkspaceError:
            if not path.is_absolute() or not is_workspace(path):
                raise
            return check_inside(path.parent, path)

    async def discard(self, path: Path) -> bool:
        """`remove`, its failure logged rather than raised: a workspace that cannot be
        removed never holds up what removes it (a tick, a stopped run, the chore)."""
        try:
            return await self.remove(path)
        except Exception as exc:
            log.warning("cannot remove workspace %s: %s", path, exc, extra={"workspace": str(path)})
            return False

    async def run_hook(self, name: str, cwd: Path) -> HookResult:
        """Run hook `name` in `cwd` until its shell exits, within `hooks.timeout_ms`:
        at the limit, when the caller is cancelled (a dispatcher stopping, a run
        stopped), and when it exits non-zero, its process group is killed (a failed
        hook leaves nothing working on); after `before_remove` whatever its exit
        (the folder goes next). Its group is recorded beside the
        workspace while it runs, so `tether agents stop` and a dispatcher taking
        the run over kill a hook a killed dispatcher left behind; and after, if it
        succeeded and left a daemon, until the workspace is removed."""
        script = getattr(self.hooks, name)
        assert isinstance(script, str)
        await reap_orphan(cwd)
        code, text, _ = await run_shell(
            script,
            cwd,
            timeout=self.hooks.timeout_ms / 1000,
            limit=OUTPUT_LIMIT,
            record=True,
            end_failed=True,
            end_always=name == "before_remove",
            remember=True,
        )
        result = HookResult(name, code, text)
        level = logging.INFO if result.ok else logging.WARNING
        log.log(
            level,
            "hook %s %s",
            name,
            "ok" if result.ok else ("timed out" if code is None else f"exited {code}"),
            extra={"workspace": str(cwd), "output": text},
        )
        return result

    def sweep(
        self,
        *,
        remove_keys: set[str],
        busy: set[str],
        max_age_days: float | None,
        max_total_mb: float | None,
        now: float | None = None,
    ) -> list[Path]:
        """Which workspaces the retention policy removes: those of `remove_keys`
        (terminal issues), those older than `max_age_days`, then the oldest until the
        total is within `max_total_mb`; never one in `busy`. Returns the paths (the
        caller removes them, running `before_remove`)."""
        if not self.root.is_dir():
            return []
        now = time.time() if now is None else now
        folders = sorted(  # only what the dispatcher created: never a folder of the user's
            (
                p
                for p in self.root.iterdir()
                if p.is_dir() and not p.is_symlink() and is_workspace(p)
            ),
            key=lambda p: p.stat().st_mtime,
        )
        doomed: list[Path] = []
        for p in folders:
            if p.name in busy:
                continue
            too_old = max_age_days is not None and now - p.stat().st_mtime > max_age_days * 86400
            if p.name in remove_keys or too_old:
                doomed.append(p)
        if max_total_mb is not None:
            sizes = {p: _size(p) for p in folders if p not in doomed}
            total = sum(sizes.values())
            for p in sizes:  # oldest first
                if total <= max_total_mb * 1024 * 1024:
                    break
                if p.name not in busy:
                    doomed.append(p)
                    total -= sizes[p]
        return doomed


async def run_shell(
    script: str,
    cwd: Path,
    *,
    timeout: float,
    limit: int,
    env: dict[str, str] | None = None,
    record: bool = False,
    end_failed: bool = False,
    end_always: bool = False,
    remember: bool = False,
) -> tuple[int | None, str, int]:
    """Run ``sh -lc script`` in `cwd` (its own process group) until its shell exits,
    within `timeout` seconds: (exit code, None if killed at the limit; the last
    `limit` bytes of its output, where a failing command says why; the output's
    size). The output goes to a file, not a pipe: a huge one costs no memory, and a
    background child holding it open does not hold the caller up. `record`: the
    group is recorded beside `cwd` while it runs (see `reap_orphan`); `end_failed`:
    a non-zero exit kills what is left of its group, as the time-out does;
    `end_always`: any exit does; `remember`: a group a succeeding script leaves
    running is recorded beside `cwd`, for `stop_leftovers`."""
    floor = _ticks_now()  # its start time at the latest, if it is reaped before it is read
    with tempfile.TemporaryFile() as out:
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-lc",
            script,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        started = _spawned_at(proc.pid) or floor
        recorded = record_agent(cwd, proc.pid) if record else None
        try:
            end = "always" if end_always else ("failure" if end_failed else "")
            code = await _exit_within(proc, timeout, started, end=end)
            if remember and code == 0 and started and _group_left(proc.pid, started):
                _remember_daemon(cwd, proc.pid, started)
        finally:
            if recorded is not None:
                recorded.unlink(missing_ok=True)
        size = out.seek(0, os.SEEK_END)
        out.seek(max(size - limit, 0))
        # a NUL (a binary file cat'ed) would fail the step recording it, on any store
        text = scrub_unstorable(out.read(limit).decode("utf-8", "replace"))
    return code, text, size


async def _exit_within(
    proc: asyncio.subprocess.Process, timeout: float, started: str | None, *, end: str
) -> int | None:
    """The process's exit code, or None when it was killed (with its group) at
    `timeout`; killed too if the caller is cancelled. Waits for the exit itself,
    never for a pipe a detached child may hold open, and never without a bound.
    A kill waits for the whole group (`started`: the leader's start time), not
    just the shell: its children die after it, and a cancelled hook's clone must
    not write on in a workspace about to be removed (`end`: "failure", after a
    non-zero exit too, for the same reason; "always", after any exit)."""
    try:
        await asyncio.wait_for(proc.wait(), timeout)
        ending = end == "always" or (end == "failure" and proc.returncode != 0)
        if ending and started and _group_left(proc.pid, started):
            await _end_group(proc, started)  # a child it started: never a reused pid's group
        return proc.returncode
    except TimeoutError:
        await _end_group(proc, started)
        return None
    except BaseException:
        # shielded: the kill is waited for even while the cancel goes on up
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(_end_group(proc, started))
        raise


async def _end_group(proc: asyncio.subprocess.Process, started: str | None) -> None:
    """Kill `proc`'s process group and wait until it is reaped and no process of the
    group is left (10 s at most for each: one stuck in the kernel holds nothing up)."""
    kill_group(proc.pid)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 10)
    if started is not None:
        await until_gone(proc.pid, started, polls=200)


async def until_gone(pgid: int, started: str, *, polls: int) -> None:
    """Until no process of group `pgid` runs, looking `polls` times at most."""
    for _ in range(polls):
        if not _group_left(pgid, started):
            return
        await asyncio.sleep(0.05)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _hook_error(result: HookResult) -> WorkspaceError:
    why = "timed out" if result.exit_code is None else f"exited {result.exit_code}"
    code = "hook_timeout" if result.exit_code is None else "hook_failed"
    tail = result.output.strip()[-300:]
    return WorkspaceError(f"hook {result.name} {why}" + (f": {tail}" if tail else ""), code=code)


# -- the agent a workspace's driver launched ------------------------------------------


def _agent_file(workspace: Path) -> Path:
    # beside the workspace, not in it: an agent committing its tree must not see it
    return workspace.parent / f".{workspace.name}.agent"


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after its name (Linux), from the state on;
    None if the process is gone (a zombie, killed and not yet reaped, is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if len(fields) < 20 or fields[0] == "Z" else fields


def start_time(pid: int) -> str | None:
    """The process's start time, telling it from a reused pid; None if it is gone."""
    fields = _stat(pid)
    return None if fields is None else fields[19]


def _spawned_at(pid: int) -> str | None:
    """The start time of a child of ours even if it has already exited (a zombie not
    yet reaped: its pid cannot be reused before we reap it), so a hook that exits at
    once still has its group told from a reused pid's; None once reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[19] if len(fields) >= 20 else None


def _ticks_now() -> str | None:
    """Now, in the unit and clock of a process's start time (clock ticks since boot;
    the same clock since Linux 5.3), one tick early: no process started from now on
    has an earlier start time. None off Linux."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return str(max(int(uptime * os.sysconf("SC_CLK_TCK")) - 1, 0))


def record_agent(workspace: Path, pid: int) -> Path:
    """Record the agent's process group beside `workspace`, for `reap_orphan`."""
    path = _agent_file(workspace)
    with contextlib.suppress(OSError):
        path.write_text(json.dumps({"pgid": pid, "started": start_time(pid)}))
    return path


async def reap_orphan(workspace: Path) -> bool:
    """Kill the agent an earlier driver of this workspace left behind.

    A dispatcher killed with SIGKILL cannot stop its agent (it runs in its own
    process group); the run is taken over and its turn runs again, and without
    this the old agent would go on working in the same workspace beside the new
    one. Its process group is recorded beside the workspace at launch, with the
    process's start time so a reused pid is never killed. True if one was."""
    path = _agent_file(workspace)
    try:
        data = json.loads(path.read_text())
        pgid, started = int(data["pgid"]), data.get("started")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    path.unlink(missing_ok=True)
    if started is None or not _group_left(pgid, str(started)):
        return False  # gone, or the pid now belongs to someone else
    kill_group(pgid)
    await until_gone(pgid, str(started), polls=100)  # its locks and files released
    return True


def _group_left(pgid: int, started: str) -> bool:
    """Some of the recorded group still runs. Its leader (the agent's shell) may be
    gone while a child works on: an agent dies of the broken pipe its killed
    dispatcher left, the test run or server it started does not. Such a child
    started no earlier than the leader, and while it lives the group id is not
    reused; a pid reused by another process (a different start time) is never it."""
    leader = start_time(pgid)
    if leader is not None or not started.isdigit():
        return leader == started
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _member_since(int(proc.name), pgid, int(started)):
            return True
    return False


def _member_since(pid: int, pgid: int, started: int) -> bool:
    """Process `pid` runs, in group `pgid`, started at or after `started` (jiffies)."""
    fields = _stat(pid)
    if fields is None or not fields[19].isdigit():
        return False
    return int(fields[2]) == pgid and int(fields[19]) >= started


# -- the daemons a workspace's hooks left ----------------------------------------------


def _daemons_file(workspace: Path) -> Path:
    # beside the workspace, not in it: an agent committing its tree must not see it
    return workspace.parent / f".{workspace.name}.daemons"


def _recorded_daemons(workspace: Path) -> list[tuple[int, str]]:
    """The groups recorded for `workspace` (pgid, the leader's start time)."""
    try:
        data = json.loads(_daemons_file(workspace).read_text())
        return [(int(d["pgid"]), str(d["started"])) for d in data]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _remember_daemon(workspace: Path, pgid: int, started: str) -> None:
    """Record the group a succeeding hook left running (those gone since dropped)."""
    alive = [(g, s) for g, s in _recorded_daemons(workspace) if _group_left(g, s)]
    groups = [*alive, (pgid, started)]
    try:
        _daemons_file(workspace).write_text(
            json.dumps([{"pgid": g, "started": s} for g, s in groups])
        )
    except OSError as exc:
        log.warning(
            "cannot record the daemon hook group %d left in %s (%s): it outlives the "
            "workspace's removal unless it runs inside the folder",
            pgid,
            workspace,
            exc,
            extra={"workspace": str(workspace)},
        )


def _ancestors() -> set[int]:
    """This process and its parents, up to init: never stopped."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        fields = _stat(pid)
        pid = int(fields[1]) if fields is not None and fields[1].isdigit() else 0
    return found


def _squatters(workspace: Path) -> list[tuple[int, str]]:
    """The daemons (pid, start time) working inside `workspace` (their cwd in it, read
    from /proc: Linux; none elsewhere), but never this process or its parents, nor
    one with a terminal: a person's shell or editor looking into the workspace."""
    spared = _ancestors()
    found = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in spared:
                continue
            try:
                cwd = Path(os.readlink(entry / "cwd"))
            except OSError:
                continue  # gone, or not ours to look at
            fields = _stat(int(entry.name))
            if fields is None or fields[4] != "0":  # gone, or a controlling terminal
                continue
            if cwd.is_relative_to(workspace):
                found.append((int(entry.name), fields[19]))
    return found


def _send(target: int, sig: signal.Signals, *, group: bool) -> None:
    try:
        (os.killpg if group else os.kill)(target, sig)
    except ProcessLookupError:
        pass
    except OSError as exc:
        kind = "process group" if group else "process"
        log.warning("cannot stop %s %d with %s: %s", kind, target, sig.name, exc)


async def stop_leftovers(workspace: Path, *, grace: float) -> list[int]:
    """Stop what the hooks left running in `workspace`, which is going: the groups
    recorded for it, and the processes working inside it. SIGTERM first, SIGKILL
    for what is left after `grace` seconds. Returns the pids and pgids stopped;
    never raises (a kill that fails is logged: the removal goes on)."""
    try:
        return await _stop(workspace, grace)
    except Exception as exc:
        log.warning(
            "cannot stop what the hooks left in %s: %s", workspace, exc,
            extra={"workspace": str(workspace)},
        )  # fmt: skip
        return []


async def _stop(workspace: Path, grace: float) -> list[int]:
    """`stop_leftovers`, its failures raised."""
    own = os.getpgrp()
    groups = [(g, s) for g, s in _recorded_daemons(workspace) if g != own and _group_left(g, s)]
    loners = await asyncio.to_thread(_squatters, workspace) if workspace.is_dir() else []
    if groups or loners:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            for g, _ in _still_running(groups, group=True):
                _send(g, sig, group=True)
            for pid, _ in _still_running(loners, group=False):
                _send(pid, sig, group=False)
            deadline = time.monotonic() + wait
            while _any_running(groups, loners) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        log.info(
            "stopped what the hooks left running in %s: process groups %s, processes %s",
            workspace,
            [g for g, _ in groups],
            [pid for pid, _ in loners],
            extra={"workspace": str(workspace)},
        )
        if _any_running(groups, loners):
            log.warning(
                "some of what the hooks left in %s still runs 10 s after SIGKILL "
                "(stuck in the kernel?): process groups %s, processes %s",
                workspace,
                [g for g, _ in _still_running(groups, group=True)],
                [pid for pid, _ in _still_running(loners, group=False)],
                extra={"workspace": str(workspace)},
            )
    _daemons_file(workspace).unlink(missing_ok=True)
    return [g for g, _ in groups] + [pid for pid, _ in loners]


def _still_running(found: list[tuple[int, str]], *, group: bool) -> list[tuple[int, str]]:
    """Those of `found` (pgids or pids, with their start time) still running."""
    if group:
        return [(g, s) for g, s in found if _group_left(g, s)]
    return [(pid, s) for pid, s in found if start_time(pid) == s]


def _any_running(groups: list[tuple[int, str]], loners: list[tuple[int, str]]) -> bool:
    return bool(_still_running(loners, group=False) or _still_running(groups, group=True))
