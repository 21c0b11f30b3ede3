"""Runs README.md's code blocks in order, as a reader would, in the working directory.

Started by tests/test_readme.py as ``python _readme_driver.py plan.json``, in a
temporary project. Python blocks share one namespace (like pasting them into
one script, top to bottom); shell blocks run line by line in bash, keeping
what a reader's shell keeps (`source`, and `export`/`cd` within a block). The
plan says which commands are not run, which stand in for others, and which
serve until stopped. Any failure exits non-zero naming the README line.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_OPTIONAL = re.compile(r"\s\[([^\[\]]+)\]")  # `cmd [--opt x]` in a synopsis


def _say(text: str) -> None:
    print(text, flush=True)


def _fail(block: dict[str, Any], what: str) -> None:
    _say(f"FAILED at README.md:{block['line']} ({block['section']}): {what}")
    sys.exit(1)


def _logical_lines(code: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in code.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _variants(line: str) -> list[str]:
    """A synopsis line with optional parts runs without them, then with them."""
    if not _OPTIONAL.search(line):
        return [line]
    return [_OPTIONAL.sub("", line), _OPTIONAL.sub(lambda m: " " + m[1], line)]


def _run_shell(block: dict[str, Any], plan: dict[str, Any], session: list[str]) -> None:
    local: list[str] = []
    for line in _logical_lines(block["code"]):
        command = line.split(" #")[0].strip()
        skipped = next((r for p, r in plan["not_run"].items() if command.startswith(p)), None)
        if skipped is not None:
            _say(f"  not run: {command}  ({skipped})")
            continue
        if ("postgresql://" in command or "postgres://" in command) and not plan["postgres"]:
            _say(f"  not run: {command}  (needs PostgreSQL, which is not available here)")
            continue
        for prefix, instead in plan["stand_ins"].items():
            if command.startswith(prefix):
                _say(f"  {command}  -> run as: {instead}")
                command = instead + command[len(prefix) :]
        word = command.split()[0]
        if word in ("source", ".", "export", "cd"):
            # what a reader's shell keeps: activation for the session, the rest for the block
            _run_command(block, plan, [*session, *local, command], "true")
            (session if word in ("source", ".") else local).append(command)
            continue
        for variant in _variants(command):
            _run_command(block, plan, [*session, *local], variant)


def _run_command(
    block: dict[str, Any], plan: dict[str, Any], prefix: list[str], command: str
) -> None:
    script = "; ".join(["set -e", *prefix, f"exec {command}"])
    serve = next((s for p, s in plan["serving"].items() if command.startswith(p)), None)
    _say(f"  $ {prefix[-1] if command == 'true' else command}")
    if serve is not None:
        proc = subprocess.Popen(
            ["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        time.sleep(serve)
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            _fail(block, f"`{command}` stopped by itself (exit {proc.returncode}):\n{out}")
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
        _say("    " + out.strip().replace("\n", "\n    "))
        if proc.returncode != 0:
            _fail(block, f"`{command}` exited {proc.returncode} on SIGTERM:\n{out}")
        return
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    if done.stdout.strip():
        _say("    " + done.stdout.strip().replace("\n", "\n    "))
    if done.returncode != 0:
        _fail(block, f"`{command}` exited {done.returncode}:\n{done.stdout}{done.stderr}")


def _run_pytest(block: dict[str, Any]) -> None:
    """A block that is a whole test file, run by pytest in a project of its own (no
    conftest, no configuration: a fresh project)."""
    project = Path(f"pytest-project-{block['line']}").absolute()
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "test_readme_block.py").write_text(block["code"])
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *("--rootdir", str(project), "-c", str(project / "pytest.ini"), str(project)),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    _say("    " + done.stdout.strip().replace("\n", "\n    "))
    if done.returncode != 0:
        _fail(block, f"pytest exited {done.returncode}:\n{done.stdout}{done.stderr}")


def main(plan_file: str) -> None:
    plan = json.loads(Path(plan_file).read_text())
    namespace: dict[str, Any] = {"__name__": "__main__"}
    session: list[str] = []
    for block in plan["blocks"]:
        _say(f"--- README.md:{block['line']} ```{block['lang']} ({block['section']})")
        marker = block["marker"] or ""
        if marker.startswith("not-run:"):
            _say(f"  not run: {marker[len('not-run:') :].strip()}")
            continue
        for name, text in plan["files"].get(str(block["line"]), {}).items():
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            Path(name).write_text(text)
            _say(f"  (the reader's {name}, as the README describes it)")
        if block["lang"] != "python":
            _run_shell(block, plan, session)
        elif marker == "run: pytest":
            _run_pytest(block)
        else:
            # blank lines first, so a traceback names the README's own line numbers
            code = compile("\n" * block["line"] + block["code"], "README.md", "exec")
            try:
                exec(code, namespace)
            except BaseException as exc:  # reported with its README line
                import traceback

                _fail(block, "".join(traceback.format_exception(exc)))
    _say("README ran to its end")  # exiting: runs started in the background are handed back


if __name__ == "__main__":
    main(sys.argv[1])
