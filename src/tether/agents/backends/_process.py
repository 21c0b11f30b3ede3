"""Running an agent CLI as a subprocess that writes JSON lines on stdout.

One loop for every CLI backend: launch ``sh -lc <command>`` in the workspace
(its own process group), write the prompt to stdin, parse each stdout line
with the backend's `parse_line`, and end the turn on the result the parser
recognises (its final ``result``, ``input_required``: the process gets
`RESULT_GRACE` seconds to exit on its own), on exit, or after
`silence_timeout` seconds without a line. At the turn's end the process
group is always killed, so no background child of the agent (a dev server, a
watcher) outlives its turn. Lines are read up to 10 MB (a longer one fails
the turn as malformed); stderr's last 64 KB are kept (its tail explains a failed
exit, with a hint when the shell did not find the command).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .._errors import AgentError
from .._issue import scrub_unstorable
from .._workspace import kill_group, reap_orphan, record_agent, start_time, until_gone
from ._port import AgentEvent, OnEvent, TurnRequest, TurnResult

__all__ = ["LineParser", "Parsed", "ProcessBackend"]

MAX_LINE = 10 * 1024 * 1024
RESULT_GRACE = 2.0  # seconds an agent that reported its result has to exit by itself
STDERR_KEEP = 64 * 1024  # bytes of stderr kept: its tail explains a failed exit
EXIT_GRACE = 1.0  # seconds of output still read once the agent's shell exited
EXIT_POLL = 0.1  # seconds between looks at whether it exited, while no line comes


@dataclass(frozen=True)
class Parsed:
    """What one line meant: an event to report, and/or the end of the turn."""

    event: AgentEvent | None = None
    result: TurnResult | None = None
    ends_turn: bool | None = None  # None: a result ends it, but a rate-limit notice

    @property
    def final(self) -> bool:
        """The turn is over: nothing the agent prints after this line matters."""
        if self.ends_turn is not None:
            return self.ends_turn
        return self.result is not None and self.result.status != "rate_limited"


LineParser = Callable[[dict[str, Any]], Parsed]


class ProcessBackend:
    """A CLI agent: `argv(request)` builds the command, `parse` reads its lines."""

    name = "process"
    # the agent tells each turn's usage (Claude's result, Codex's turn.completed): a
    # turn it worked in (it wrote its own lines) but told none of may have been billed,
    # so it is logged as a call of unknown cost. A `command` program need not tell any
    tells_usage = False

    def __init__(self, command: str, parse: LineParser, *, name: str | None = None) -> None:
        self.command = command
        self.parse = parse
        if name is not None:
            self.name = name

    def shell_command(self, request: TurnRequest) -> str:
        return self.command

    async def run_turn(self, request: TurnRequest, on_event: OnEvent) -> TurnResult:
        env = {**os.environ, **request.env}
        await reap_orphan(request.workspace)
        try:
            proc = await asyncio.create_subprocess_exec(
                "sh",
                "-lc",
                self.shell_command(request),
                cwd=request.workspace,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                limit=MAX_LINE,
                start_new_session=True,
            )
        except OSError as exc:
            raise AgentError(
                f"cannot start {self.command!r}: {exc}", code="agent_not_found"
            ) from None
        started = start_time(proc.pid)
        record = record_agent(request.workspace, proc.pid)
        try:
            return await self._drive(proc, request, on_event)
        finally:
            # always, even when the shell itself exited: its background children go too
            # (shielded: a second cancel does not leave the group running unwaited)
            await asyncio.shield(_end_agent(proc, started))
            with contextlib.suppress(OSError):
                record.unlink()

    async def _drive(
        self, proc: asyncio.subprocess.Process, request: TurnRequest, on_event: OnEvent
    ) -> TurnResult:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        # fed beside the reading: an agent that never reads a prompt larger than the
        # pipe holds must not keep the turn from its silence timeout
        feed = asyncio.ensure_future(_feed(proc.stdin, request.prompt.encode()))
        errors = _Tail(proc.stderr, STDERR_KEEP)
        lines = _Lines(proc, proc.stdout)
        result: TurnResult | None = None  # the turn's end, as the agent said it
        notice: TurnResult | None = None  # a rate limit, say: why a failed exit failed
        session = request.session_id
        try:
            while True:
                try:
                    line = await lines.next(request.silence_timeout)
                except (TimeoutError, ValueError) as exc:
                    return TurnResult("failed", session, error=_unread(exc, request))
                if not line:
                    break
                parsed = self._parse(line)
                if parsed.event is not None:
                    session = parsed.event.session_id or session
                    event = parsed.event
                    if event.session_id is None and session is not None:
                        event = replace(event, session_id=session)  # codex names it once
                    await on_event(event)
                if parsed.final:
                    result = parsed.result if parsed.result is not None else notice
                    await _exited(proc, RESULT_GRACE)
                    break
                if parsed.result is not None:
                    notice = parsed.result
            # output closed: the exit follows (bounded all the same)
            code = await _exited(proc, request.silence_timeout) if result is None else None
            if result is None:  # its stderr explains a failed exit: read it to the end
                await errors.finish(1.0)
        finally:
            feed.cancel()
            errors.stop()
        stderr = errors.tail
        if result is not None:
            return result if result.session_id else _with_session(result, session)
        if code == 0:  # a clean exit without a result completes the turn, notices or not
            return TurnResult("completed", session)
        if notice is not None:
            return notice if notice.session_id else _with_session(notice, session)
        return TurnResult("failed", session, error=self._exit_error(code, stderr))

    def _exit_error(self, code: int | None, stderr: bytes) -> str:
        """Why a turn failed on its exit: the code (with a hint for the shell's 127,
        "not found") and stderr's tail."""
        tail = scrub_unstorable(stderr.decode("utf-8", "replace").strip()[-500:])
        why = f"exited {code}" if code is not None else "closed its output but did not exit"
        if code == 127:
            why += f" (command not found: is agent.command {self.command!r} installed, on PATH?)"
        return f"process_exit: {why}" + (f": {tail}" if tail else "")

    def _parse(self, line: bytes) -> Parsed:
        """A NUL or a lone surrogate (raw, or JSON's ``\\u0000``/``\\ud800``, as a tool
        cutting text mid-emoji writes) becomes U+FFFD: no database stores either, and
        the turn's result would fail the run for good rather than be retried."""
        text = scrub_unstorable(line.decode("utf-8", "replace").strip())
        if not text:
            return Parsed()
        try:
            data = scrub_unstorable(json.loads(text))
        except ValueError:
            return Parsed(AgentEvent("other_message", progress=True, message=text[:2000]))
        if not isinstance(data, dict):
            return Parsed(AgentEvent("malformed", progress=False, message=text[:2000]))
        return self.parse(data)


async def _end_agent(proc: asyncio.subprocess.Process, started: str | None) -> None:
    """Kill the agent's process group and wait until no process of it is left, not
    just its shell (`started`: the shell's start time): the tools the agent started
    (a compiler, a test run, git) die after the shell, and must not write on in a
    workspace handed to the next attempt or removed. Each wait is bounded: one stuck
    in the kernel, or a child that left the group holding a pipe, holds nothing up."""
    kill_group(proc.pid)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_ended(proc), 10)
    if started is not None:
        await until_gone(proc.pid, started, polls=200)


async def _ended(proc: asyncio.subprocess.Process) -> None:
    """The process exited and its output pipes closed (what is left in them read and
    dropped): `proc.wait()` alone returns at once for a process already seen to exit,
    leaving pipes a killed child held to be closed by no one."""
    await proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            while await stream.read(1 << 16):
                pass


async def _feed(stdin: asyncio.StreamWriter, prompt: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(prompt)
        await stdin.drain()
    stdin.close()


class _Tail:
    """The last `keep` bytes of `stream`, read on in the background: an agent writing
    gigabytes to stderr costs the dispatcher no more memory than that, and what was
    read is there even when a child the agent left holds the stream open."""

    def __init__(self, stream: asyncio.StreamReader, keep: int) -> None:
        self.tail = b""
        self.stream = stream
        self.keep = keep
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while chunk := await self.stream.read(1 << 16):
            self.tail = (self.tail + chunk)[-self.keep :]

    async def finish(self, within: float) -> None:
        """Read on to the stream's end, for up to `within` seconds."""
        await asyncio.wait([self.task], timeout=within)

    def stop(self) -> None:
        self.task.cancel()


class _Lines:
    """The agent's output lines. Once the agent's shell exited and no line came for
    `EXIT_GRACE` seconds, its output counts as closed: a child it left in the
    background (a dev server, a watcher) holding stdout open must not hide the exit
    until the silence timeout, which would fail a turn that ended at once."""

    def __init__(self, proc: asyncio.subprocess.Process, stdout: asyncio.StreamReader) -> None:
        self.proc = proc
        self.stdout = stdout
        self.exited_at: float | None = None

    async def next(self, silence: float) -> bytes:
        """The next line (b"" once the output is over); TimeoutError after `silence`
        seconds without one. A line's wait is polled for the exit: an unfinished
        line stays in the reader's buffer when its wait is cancelled."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + silence
        read = asyncio.ensure_future(self.stdout.readline())
        try:
            while True:
                now = loop.time()
                if self.proc.returncode is not None and self.exited_at is None:
                    self.exited_at = now
                # idle for the grace since the exit (a line read resets it: nothing
                # the agent wrote before its exit is dropped, however slow the reading)
                over = None if self.exited_at is None else max(self.exited_at, start) + EXIT_GRACE
                until = deadline if over is None else min(deadline, over)
                if now >= until:
                    if over is not None and now >= over:
                        return b""
                    raise TimeoutError
                done, _ = await asyncio.wait({read}, timeout=min(until - now, EXIT_POLL))
                if done:
                    return read.result()
        finally:
            read.cancel()


async def _exited(proc: asyncio.subprocess.Process, within: float) -> int | None:
    """The exit code once the process exited, polled for up to `within` seconds (not
    `proc.wait()`, which on Python 3.11 also waits for every holder of its pipes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while proc.returncode is None and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return proc.returncode


def _unread(exc: Exception, request: TurnRequest) -> str:
    """Why no line came: the silence timeout, or (asyncio's ValueError "Separator is
    not found, and chunk exceed the limit") a line past `MAX_LINE`."""
    if isinstance(exc, TimeoutError):
        return f"turn_timeout: no output for {request.silence_timeout:g}s"
    return (
        f"malformed: an output line longer than {MAX_LINE // 2**20} MB "
        "(the agent must write one JSON object per line)"
    )


def _with_session(result: TurnResult, session: str | None) -> TurnResult:
    return replace(result, session_id=session)
