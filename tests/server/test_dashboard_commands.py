"""The commands the dashboard tells an operator to run, for a queue whose name a shell
splits (a space, a ';'): each is quoted so that pasting it starts a worker of that
queue, not a worker of its first word followed by another command."""

from __future__ import annotations

import html
import re
import textwrap
from pathlib import Path

import httpx

from tether import Client

from ._serve import start

QUEUE = "night jobs; echo hi"
FLOWS = textwrap.dedent(
    f"""
    import os

    import tether

    app = tether.App(os.environ["FLOWS_DB"])

    @app.workflow
    async def greet(wf: tether.Workflow) -> str:
        return await wf.step("hello", lambda: "hello")

    app.queue({QUEUE!r}, concurrency=1)
    """
)
QUOTED = "tether worker --app FILE.py:app -q 'night jobs; echo hi'"


def _commands(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    found = re.findall(r"<code>(tether worker[^<]*)</code>|`(tether worker[^`]*)`", page.text)
    return [html.unescape(a or b) for a, b in found]


def test_a_worker_command_for_a_queue_a_shell_splits_is_quoted(tmp_path: Path) -> None:
    # the queues page said `tether worker --app … -q night jobs; echo hi`, and a run's
    # page, after a signal that woke a run no worker serves, `... -q night jobs; echo hi`:
    # pasted, a worker of queue 'night' started and `echo hi` ran after it
    dash = start(tmp_path, f"sqlite:///{tmp_path}/t.db", flows=FLOWS)
    try:
        with Client(dash.url) as client:
            wid = client.start("greet", queue=QUEUE)  # no worker: it stays queued
        queues = _commands(httpx.get(dash.url + "/queues"))
        run = _commands(httpx.get(f"{dash.url}/runs/{wid}", params={"done": "signalled-stuck"}))
    finally:
        dash.stop()
    assert queues == [QUOTED.replace("FILE.py:app", "…")], queues
    assert run and all(c == QUOTED for c in run), run
