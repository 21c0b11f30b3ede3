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
import signal
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .._errors import AgentError
from .._issue import _storable
from .._workspace import reap_orphan, record_agent
from ._port import AgentEvent, OnEvent, TurnRequest, TurnResult

__all__ = ["LineParser", "Parsed", "ProcessBackend"]

MAX_LINE = 10 * 1024 * 1024
RESULT_GRACE = 2.0  # seconds an agent that reported its result has to exit by itself
STDERR_KEEP = 64 * 1024  # bytes of stderr kept: its tail explains a failed exit


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
        record = record_agent(request.workspace, proc.pid)
        try:
            return await self._drive(proc, request, on_event)
        finally:
            # always, even when the shell itself exited: its background children go too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                # bounded: a child that left the group may still hold a pipe
                await asyncio.wait_for(asyncio.shield(proc.wait()), 10)
            with contextlib.suppress(OSError):
                record.unlink()

    async def _drive(
        self, proc: asyncio.subprocess.Process, request: TurnRequest, on_event: OnEvent
    ) -> TurnResult:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(request.prompt.encode())
            await proc.stdin.drain()
        proc.stdin.close()
        errors = asyncio.ensure_future(_tail(proc.stderr, STDERR_KEEP))
        result: TurnResult | None = None  # the turn's end, as the agent said it
        notice: TurnResult | None = None  # a rate limit, say: why a failed exit failed
        session = request.session_id
        try:
            while True:
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), request.silence_timeout)
                except TimeoutError:
                    return TurnResult(
                        "failed",
                        session,
                        error=f"turn_timeout: no output for {request.silence_timeout:g}s",
                    )
                except ValueError:  # asyncio's "Separator is not found, and chunk exceed..."
                    return TurnResult(
                        "failed",
                        session,
                        error=f"malformed: an output line longer than {MAX_LINE // 2**20} MB "
                        "(the agent must write one JSON object per line)",
                    )
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
                await asyncio.wait([errors], timeout=1.0)
        finally:
            if not errors.done():
                errors.cancel()
        stderr = errors.result() if errors.done() and not errors.cancelled() else b""
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
        tail = _storable(stderr.decode("utf-8", "replace").strip()[-500:])
        why = f"exited {code}" if code is not None else "closed its output but did not exit"
        if code == 127:
            why += f" (command not found: is agent.command {self.command!r} installed, on PATH?)"
        return f"process_exit: {why}" + (f": {tail}" if tail else "")

    def _parse(self, line: bytes) -> Parsed:
        """A NUL or a lone surrogate (raw, or JSON's ``\\u0000``/``\\ud800``, as a tool
        cutting text mid-emoji writes) becomes U+FFFD: no database stores either, and
        the turn's result would fail the run for good rather than be retried."""
        text = _storable(line.decode("utf-8", "replace").strip())
        if not text:
            return Parsed()
        try:
            data = _storable(json.loads(text))
        except ValueError:
            return Parsed(AgentEvent("other_message", progress=True, message=text[:2000]))
        if not isinstance(data, dict):
            return Parsed(AgentEvent("malformed", progress=False, message=text[:2000]))
        return self.parse(data)


async def _tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """The last `keep` bytes of `stream`, read to its end: an agent writing gigabytes
    to stderr costs the dispatcher no more memory than that."""
    tail = b""
    while chunk := await stream.read(1 << 16):
        tail = (tail + chunk)[-keep:]
    return tail


async def _exited(proc: asyncio.subprocess.Process, within: float) -> int | None:
    """The exit code once the process exited, polled for up to `within` seconds (not
    `proc.wait()`, which on Python 3.11 also waits for every holder of its pipes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while proc.returncode is None and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return proc.returncode


def _with_session(result: TurnResult, session: str | None) -> TurnResult:
    return replace(result, session_id=session)
