"""A run that waits days for a person, holding no process meanwhile.

    python examples/approval.py start      # drafts, then parks waiting for approval
    python examples/approval.py approve    # any process, any time later: approve it
    python examples/approval.py status

Each command is a separate process; the run lives in .tether/tether.db (or
$TETHER_DATABASE_URL). To start over, `tether runs delete publish-q3-report` once it
has ended (`tether runs cancel` it first if not).
"""

from __future__ import annotations

import sys

import tether

app = tether.App()
RUN = "publish-q3-report"
COMMANDS = ("start", "approve", "status")


@app.workflow(name="publish", version="1")
async def publish(wf: tether.Workflow, doc: str) -> str:
    draft = await wf.step("draft", lambda: f"{doc}: 3 pages, 2 charts")
    # code outside steps runs again on every resume; only steps are done once
    print(f"drafted: {draft}; waiting for approval (signal 'approval' to {wf.workflow_id})")
    decision = await wf.wait_for_signal("approval", timeout=7 * 86400, default={"by": None})
    if decision["by"] is None:
        return "expired without approval"
    await wf.step("publish", lambda: f"published {doc}")
    return f"published, approved by {decision['by']}"


def command(name: str) -> str:
    """One command's last line; a run in the wrong state raises tether's error."""
    if name == "start":
        result = app.run(publish, "Q3 report", workflow_id=RUN)
        if result.status is tether.RunStatus.COMPLETED:
            return f"run {RUN}: completed earlier -> {result.value}"
        return f"run {RUN}: {result.status.value}; approve it: python examples/approval.py approve"
    if name == "approve":
        app.signal(RUN, "approval", {"by": "ada"})
        result = app.result(RUN, timeout=30)
        return f"run {RUN}: {result.status.value} -> {result.value}"
    return f"run {RUN}: {app.get_run(RUN).status.value}"


def main(argv: list[str]) -> int:
    name = argv[0] if argv else "start"
    if name not in COMMANDS or len(argv) > 1:
        print(f"usage: python examples/approval.py [{' | '.join(COMMANDS)}]", file=sys.stderr)
        return 2
    try:
        print(command(name))
    except tether.RunNotFoundError:
        print(f"no run {RUN} yet: start it with `python examples/approval.py start`")
        return 3
    except tether.RunFinishedError:
        print(f"run {RUN} has ended: nothing waits for approval (`status` shows how it ended)")
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: run {RUN} is kept; the same command carries on", file=sys.stderr)
        return 130
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
