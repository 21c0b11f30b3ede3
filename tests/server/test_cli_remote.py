"""`tether runs ... --server URL`: the same commands, through the API."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tether import Client, RunStatus
from tether.cli._common import EXIT_INTERRUPTED, EXIT_TERMINATED
from tether.testing import eventually_sync

from ._serve import Served, start, tether


def test_runs_commands_against_a_server(served: Served) -> None:
    with Client(served.url) as client:
        wid = client.start("greet", {"name": "Cy"}, tags=["x"])
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.COMPLETED, timeout=30)
    nowhere = "sqlite:////nonexistent/never.db"  # the database is not read: the server is
    env = {"TETHER_SERVER": served.url}
    listed = tether(served.folder, nowhere, "runs", "list", "--tag", "x", env=env)
    assert listed.returncode == 0 and wid in listed.stdout, listed.stderr
    as_json = tether(served.folder, nowhere, "runs", "list", "--json", env=env)
    assert [r["workflowId"] for r in json.loads(as_json.stdout)] == [wid]
    shown = tether(served.folder, nowhere, "runs", "show", wid, "--server", served.url)
    assert shown.returncode == 0 and "hi Cy" in shown.stdout
    events = tether(served.folder, nowhere, "runs", "events", wid, "--json", env=env)
    assert json.loads(events.stdout)[-1]["type"] == "workflow.completed"
    exported = tether(served.folder, nowhere, "runs", "export", wid, env=env)
    assert json.loads(exported.stdout)["output"] == "hi Cy"
    missing = tether(served.folder, nowhere, "runs", "show", "nope", env=env)
    assert missing.returncode == 3
    down = tether(served.folder, nowhere, "runs", "list", "--server", "http://127.0.0.1:9")
    assert down.returncode == 4 and "cannot reach" in down.stderr


def test_show_of_a_waiting_run_through_a_server_names_the_server_as_its_driver(
    served: Served,
) -> None:
    """It said no live process drives the run, and to start a worker, while the server
    that answered drove it (as `runs show --db` said)."""
    with Client(served.url) as client:
        wid = client.start("waits")
        eventually_sync(lambda: client.get_record(wid).status is RunStatus.WAITING, timeout=30)
        [server] = [w.id for w in client.workers() if "waits" in w.workflows]
    nowhere = "sqlite:////nonexistent/never.db"
    shown = tether(served.folder, nowhere, "runs", "show", wid, "--server", served.url)
    assert shown.returncode == 0, shown.stderr
    assert "no live process" not in shown.stdout
    assert server in " ".join(shown.stdout.split()), shown.stdout


def test_runs_list_json_from_a_server_cut_short_says_so(served: Served) -> None:
    """As from the database: a --json list stopped by --limit says so on stderr."""
    with Client(served.url) as client:
        for n in range(3):
            client.start("greet", {"name": f"n{n}"}, workflow_id=f"cut-{n}")
    nowhere = "sqlite:////nonexistent/never.db"
    got = tether(served.folder, nowhere, "runs", "list", "--json", "--limit", "2",
                 "--server", served.url)  # fmt: skip
    assert got.returncode == 0, got.stderr
    assert len(json.loads(got.stdout)) == 2 and "2 of 3 runs" in got.stderr


def test_serve_on_a_taken_port_says_so_with_a_usage_exit(served: Served) -> None:
    """Not uvicorn's startup exit 3, which is our "no such run"."""
    port = served.url.rsplit(":", 1)[1]
    second = tether(served.folder, served.db, "serve", "--app", "flows.py:app", "--port", port)
    assert second.returncode == 2, second.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
    assert "another --port" in second.stderr and "Traceback" not in second.stderr
    # the error alone: not after lines that read as if the server had started
    assert second.stderr.startswith("error: cannot listen"), second.stderr


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)]
)
def test_serve_exits_130_on_ctrl_c_and_143_on_sigterm(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """As the rest of the CLI does (before: 0 on Ctrl-C)."""
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db")
    served.proc.send_signal(sig)
    assert served.proc.wait(timeout=30) == code, served.stop()
    assert "Traceback" not in served.log


def test_runs_server_refusals_are_usage_errors_not_store_errors(
    secured: tuple[Served, dict[str, str]],
) -> None:
    """A missing or unknown token, or a URL that is not http(s), is the caller's to fix
    (exit 2), not the database's (before: 4, "store error")."""
    served, _ = secured
    nowhere = "sqlite:////nonexistent/never.db"
    for token in ([], ["--token", "tth_not-a-token"]):
        got = tether(served.folder, nowhere, "runs", "list", "--server", served.url, *token)
        assert got.returncode == 2, got.stderr
        assert "API token" in got.stderr and "HTTP 401" in got.stderr
    plain = served.url.removeprefix("http://")
    got = tether(served.folder, nowhere, "runs", "list", "--server", plain)
    assert got.returncode == 2 and "must start with http:// or https://" in got.stderr
    assert "Traceback" not in got.stderr
