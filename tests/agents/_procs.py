"""Real dispatcher processes for the crash and concurrency tests.

`project()` writes a WORKFLOW.md (file tracker, `command` backend) and an
agent script that logs each start and end with a timestamp to a JSON-lines
file and holds an exclusive `flock` on a per-issue file while it works: an
agent that cannot take it logs ``overlap`` (two agents on one issue at once).
What an agent does is driven by files the test writes: ``block-<ID>`` makes it
wait until the file is removed; ``fail-<ID>`` makes its first ``N`` starts fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

AGENT = r"""
import fcntl, json, os, sys, time
ident = os.environ["TETHER_ISSUE_IDENTIFIER"]
here = os.environ["AGENT_HOME"]
sys.stdin.read()
def log(event, **kw):
    with open(os.path.join(here, "agents.log"), "a") as f:
        f.write(json.dumps({"issue": ident, "event": event, "t": time.time(), "pid": os.getpid(),
                            **kw}) + "\n")
lock = open(os.path.join(here, f"lock-{ident}"), "w")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    log("overlap")
    fcntl.flock(lock, fcntl.LOCK_EX)
log("start", dispatcher=os.environ.get("DISPATCHER", "?"))
print(json.dumps({"type": "message", "text": "working"}), flush=True)
while os.path.exists(os.path.join(here, f"block-{ident}")):
    time.sleep(0.05)
fail = os.path.join(here, f"fail-{ident}")
if os.path.exists(fail) and int(open(fail).read() or 0) > 0:
    left = int(open(fail).read()) - 1
    open(fail, "w").write(str(left))
    log("fail")
    print(json.dumps({"type": "result", "status": "failed", "message": "tests fail"}), flush=True)
    sys.exit(0)
time.sleep(float(os.environ.get("AGENT_WORK", "0")))
log("end")
print(json.dumps({"type": "usage", "input_tokens": 10, "output_tokens": 1}), flush=True)
print(json.dumps({"type": "result", "status": "completed", "message": "done"}), flush=True)
"""


def project(
    tmp: Path, issues: list[str], *, database_url: str, extra: str = "", agent: str = ""
) -> Path:
    """A folder with WORKFLOW.md, ISSUES.md (each issue todo, labelled) and agent.py;
    `agent` adds keys to the `agent` map (``"shutdown_grace_ms: 0, "``)."""
    where = tmp / "proj"
    where.mkdir()
    (where / "agent.py").write_text(AGENT)
    (where / "ISSUES.md").write_text(
        "\n".join(f"## {i}: issue {i}\n- status: todo\n- labels: agent\n" for i in issues)
    )
    (where / "WORKFLOW.md").write_text(
        f"""---
tracker: {{kind: file, path: ISSUES.md, active_states: [todo], terminal_states: [done],
          handoff_state: review}}
polling: {{interval_ms: 200}}
workspace: {{root: ws}}
agent: {{{agent}backend: command, command: "{sys.executable} {where / "agent.py"}", max_turns: 1,
        stall_timeout_ms: 0, max_concurrent_agents: 4}}
database_url: "{database_url}"
{extra}
---
Work on {{{{ issue.identifier }}}}
"""
    )
    return where


def start(where: Path, name: str, *args: str, **extra: str) -> subprocess.Popen[bytes]:
    """`tether agents run` in `where` (with `args`), as its own process group."""
    env = {**os.environ, "AGENT_HOME": str(where), "DISPATCHER": name, "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    env.pop("TETHER_DATABASE_URL", None)
    with (where / f"{name}.out").open("ab") as out:  # the child keeps its own copy
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "tether"), "agents", "run", "WORKFLOW.md", *args],
            cwd=where,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
    proc.wait(timeout=60)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def events(where: Path) -> list[dict[str, Any]]:
    path = where / "agents.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def of(where: Path, issue: str, event: str) -> list[dict[str, Any]]:
    return [e for e in events(where) if e["issue"] == issue and e["event"] == event]
