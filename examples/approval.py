"""A run that waits days for a person, holding no process meanwhile.

    python examples/approval.py start      # drafts, then parks waiting for approval
    python examples/approval.py approve    # any process, any time later: approve it
    python examples/approval.py status

Each command is a separate process; the run lives in .tether/tether.db.
"""

from __future__ import annotations

import sys

import tether

app = tether.App()
RUN = "publish-q3-report"


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


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "start"
    if command == "start":
        result = app.run(publish, "Q3 report", workflow_id=RUN)
        print(f"run {RUN}: {result.status.value}")
    elif command == "approve":
        app.signal(RUN, "approval", {"by": "ada"})
        result = app.result(RUN, timeout=30)
        print(f"run {RUN}: {result.status.value} -> {result.value}")
    else:
        print(f"run {RUN}: {app.get_run(RUN).status.value}")
    app.close()


if __name__ == "__main__":
    main()
