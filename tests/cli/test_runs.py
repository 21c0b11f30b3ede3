"""`tether runs list|show|events|export`: what they print, and that they never create
a database."""

from __future__ import annotations

import json
import re
import sqlite3
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tether import App, Client, RunStatus, Workflow
from tether.cli import cli
from tether.store import NewRun
from tether.testing import eventually_sync

from .._postgres import PostgresServer
from ..server._serve import start
from ._helpers import create, peak_kib, tether


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"TETHER_DATABASE_URL": None})


async def alpha(wf: Workflow) -> int:
    return 1


async def beta(wf: Workflow) -> int:
    return 2


def _submitted(url: str, n_alpha: int, n_beta: int) -> None:
    """Pending runs, fast: queued and never worked."""
    app = App(url)
    for i in range(n_alpha):
        app.submit(alpha, workflow_id=f"a-{i:03d}-{'x' * 40}", tags=["nightly"])
    for i in range(n_beta):
        app.submit(beta, workflow_id=f"b-{i:03d}", tags=["adhoc", "nightly"] if i % 2 else [])
    app.close()


def test_runs_list_stops_at_the_limit_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    _submitted(url, 100, 11)
    res = invoke("--db", url, "runs", "list")
    assert res.exit_code == 0, res.output
    assert "50 of 111 runs" in res.output
    res = invoke("runs", "list", "--limit", "5", "--db", url)  # --db after the command
    assert "5 of 111 runs" in res.output
    res = invoke("runs", "list", "--all", "--json", "--db", url)
    rows = json.loads(res.output)
    assert len(rows) == 111 and rows[0]["tags"] in ([], ["nightly"], ["adhoc", "nightly"])
    assert {"input", "output", "error", "queue", "createdAt", "finishedAt"} <= set(rows[0])


def test_a_limit_of_whole_pages_still_says_the_list_is_cut_short(tmp_path: Path) -> None:
    # `--limit 500` (the runs read at a time) of 501 runs said nothing of the 501st: a
    # script reading the JSON took the first 500 for all of them
    url = f"sqlite:///{tmp_path}/t.db"
    _submitted(url, 500, 1)
    res = invoke("--db", url, "runs", "list", "--limit", "500")
    assert res.exit_code == 0, res.output
    assert "500 of 501 runs (newest first)" in res.output, res.output[-300:]
    cut = tether(tmp_path, "runs", "list", "--json", "--limit", "500", db=url)
    assert len(json.loads(cut.stdout)) == 500
    assert "500 of 501 runs (newest first)" in cut.stderr, cut.stderr


def test_runs_list_json_cut_short_says_so_on_stderr(tmp_path: Path) -> None:
    """The text says "5 of 111 runs"; the JSON said nothing, so a script took the first
    page for every run. stdout stays one JSON array; the note goes to stderr."""
    url = f"sqlite:///{tmp_path}/t.db"
    _submitted(url, 100, 11)
    cut = tether(tmp_path, "runs", "list", "--json", "--limit", "5", db=url)
    assert cut.returncode == 0, cut.stderr
    assert len(json.loads(cut.stdout)) == 5
    assert "5 of 111 runs (newest first); --limit N or --all for more" in cut.stderr
    whole = tether(tmp_path, "runs", "list", "--json", "--all", db=url)
    assert len(json.loads(whole.stdout)) == 111 and "of 111 runs" not in whole.stderr


@pytest.mark.parametrize("command", [["runs", "list"], ["usage"]], ids=" ".join)
def test_a_time_window_given_the_wrong_way_round_is_refused(
    tmp_path: Path, command: list[str]
) -> None:
    # `--since 1h --until 2h` matched nothing and said "no runs match", exit 0
    url = create(f"sqlite:///{tmp_path}/t.db")
    res = invoke("--db", url, *command, "--since", "1h", "--until", "2h")
    assert res.exit_code == 2, res.output
    assert "--since 1h (" in res.output and "is not before --until 2h (" in res.output
    assert "give --since the earlier time" in res.output
    fine = invoke("--db", url, *command, "--since", "2h", "--until", "1h")
    assert fine.exit_code == 0, fine.output


def test_runs_list_filters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    _submitted(url, 3, 4)

    def ids(*args: str) -> list[str]:
        res = invoke("--db", url, "runs", "list", "--json", *args)
        assert res.exit_code == 0, res.output
        return sorted(r["workflowId"] for r in json.loads(res.output))

    assert ids("--workflow", "beta") == ["b-000", "b-001", "b-002", "b-003"]
    assert ids("--tag", "adhoc") == ["b-001", "b-003"]
    assert len(ids("--tag", "nightly")) == 5
    assert len(ids("--since", "30m")) == 7 and len(ids("--since", "2000-01-01")) == 7
    assert ids("--until", "2000-01-01") == [] and ids("--since", "2999-01-01T00:00") == []
    assert len(ids("--until", "2999-01-01T00:00:00+00:00")) == 7
    assert ids("--status", "completed") == []
    assert ids("--tag", "nightly", "--tag", "adhoc") == ["b-001", "b-003"]
    both = invoke("--db", url, "runs", "list", "--tag", "nightly", "--tag", "adhoc", "--limit", "1")
    assert "1 of 2 runs" in both.output, both.output
    pending = invoke("--db", url, "runs", "list", "--status", "pending", "--limit", "2")
    assert "2 of 7 runs" in pending.output, pending.output
    bad = invoke("--db", url, "runs", "list", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since: cannot read 'yesterday' as a time" in bad.output


@pytest.mark.parametrize(
    ("option", "values"),
    [("--status", ["pending", "completed"]), ("--workflow", ["alpha", "beta"]),
     ("--tenant", ["a", "b"]), ("--parent", ["p1", "p2"])],
)  # fmt: skip
def test_a_filter_given_twice_is_refused_not_half_read(
    tmp_path: Path, option: str, values: list[str]
) -> None:
    """`--status pending --status completed` listed the completed runs alone (the last
    one given won, without a word), as though no run were pending; `runs prune
    --status` takes several, so a user reads it as "either"."""
    url = f"sqlite:///{tmp_path}/t.db"
    _submitted(url, 1, 1)
    args = [a for v in values for a in (option, v)]
    res = invoke("--db", url, "runs", "list", *args)
    assert res.exit_code == 2, res.output
    assert f"{option} given 2 times ({values[0]!r}, {values[1]!r})" in res.output
    assert "run it once for each" in res.output
    once = invoke("--db", url, "runs", "list", option, values[0])
    assert once.exit_code == 0, once.output


def test_runs_list_shows_full_ids_only_when_wide(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    _submitted(url, 1, 0)
    full = "a-000-" + "x" * 40
    assert full not in invoke("--db", url, "runs", "list").output
    assert full in invoke("--db", url, "runs", "list", "--wide").output


def test_runs_show_json_and_a_step_cut_off_by_the_runs_end(tmp_path: Path, flow: Path) -> None:
    assert (
        tether(tmp_path, "run", "flows.py:greet", "-i", '{"name": "a"}', "--id", "g1").returncode
        == 0
    )
    with sqlite3.connect(tmp_path / "t.db") as conn:  # as a crash mid-step would leave it
        conn.execute("UPDATE steps SET status = 'running' WHERE run_id = 'g1' AND name = 'world'")
    url = f"sqlite:///{tmp_path}/t.db"
    shown = invoke("--db", url, "runs", "show", "g1")
    assert re.search(r"world\s+│\s+interrupted", shown.output), shown.output
    data = json.loads(invoke("--db", url, "runs", "show", "g1", "--json").output)
    assert data["workflowId"] == "g1" and data["status"] == "completed"
    assert data["steps"]["world"]["status"] == "interrupted"
    assert data["steps"]["hello"]["status"] == "completed"
    with sqlite3.connect(tmp_path / "t.db") as conn:  # handed back at exit mid-step
        conn.execute("UPDATE runs SET status = 'pending', owner_expires_at = NULL")
    handed_back = invoke("--db", url, "runs", "show", "g1")
    assert re.search(r"world\s+│\s+interrupted", handed_back.output), handed_back.output
    watched = invoke("--db", url, "runs", "watch", "g1", "--once")
    assert re.search(r"world\s+│?\s*interrupted", watched.output), watched.output


def test_unknown_run_exits_3(tmp_path: Path, flow: Path) -> None:
    create(f"sqlite:///{tmp_path}/t.db")
    for args in (
        ["runs", "show", "ghost"],
        ["runs", "events", "ghost"],
        ["runs", "export", "ghost"],
        ["runs", "cancel", "ghost"],
        ["runs", "delete", "ghost"],
    ):
        res = tether(tmp_path, *args)
        assert res.returncode == 3, res.stderr
        assert "no run with workflow id 'ghost'" in res.stderr


def test_foreign_database_exits_4(tmp_path: Path, flow: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 512)
    for args in (["runs", "list"], ["run", "flows.py:broken"]):
        res = tether(tmp_path, *args, db=f"sqlite:///{junk}")
        assert res.returncode == 4, res.stderr
        assert "not a readable SQLite database" in res.stderr
        assert "Traceback" not in res.stderr


READING = [
    ["runs", "list"],
    ["runs", "show", "r1"],
    ["runs", "events", "r1"],
    ["runs", "export", "r1"],
    ["runs", "signal", "r1", "go"],
    ["runs", "event", "go"],
    ["runs", "cancel", "r1"],
    ["runs", "prune", "--older-than", "1d"],
    ["runs", "delete", "r1"],
]


@pytest.mark.parametrize("args", READING, ids=lambda a: a[1])
def test_reading_commands_never_create_a_database(tmp_path: Path, args: list[str]) -> None:
    res = tether(tmp_path, *args, use_db=False)
    assert res.returncode == 4, res.stderr
    assert f"no tether database at {tmp_path}/.tether/tether.db" in res.stderr
    assert not (tmp_path / ".tether").exists()
    res = tether(tmp_path, *args)  # --db to a file that is not there
    assert res.returncode == 4 and f"{tmp_path}/t.db" in res.stderr
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize(
    "args",
    [*READING, ["usage"], ["tokens", "list"], ["schedules", "list"], ["top", "--once"]],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_database_in_a_folder_that_does_not_exist_is_not_there(
    tmp_path: Path, args: list[str]
) -> None:
    # it was refused as a bad URL (exit 2) with "create it first (mkdir -p ...)": a
    # folder made so holds no database either
    res = tether(tmp_path, *args, db="sqlite:///no-such-folder/t.db")
    assert res.returncode == 4, res.stderr
    assert res.stderr.startswith(
        f"error: no tether database at {tmp_path}/no-such-folder/t.db: its folder "
        f"{tmp_path}/no-such-folder does not exist (database from --db)"
    ), res.stderr
    assert "mkdir" not in res.stderr and not (tmp_path / "no-such-folder").exists()


def test_a_database_url_naming_a_folder_says_so(tmp_path: Path) -> None:
    # "no tether database at /x: the file does not exist", of a folder that exists
    res = tether(tmp_path, "runs", "list", db=f"sqlite:///{tmp_path}/")
    assert res.returncode == 4, res.stderr
    assert f"no tether database at {tmp_path}: it is a folder; name the database file" in (
        res.stderr
    ), res.stderr
    assert f"sqlite:///{tmp_path}/tether.db" in res.stderr


def test_reading_a_postgres_database_without_tether_tables(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.url_with_schema(schema)
    res = tether(tmp_path, "runs", "list", db=url)
    assert res.returncode == 4, res.stderr
    assert f"no tether schema '{schema}'" in res.stderr
    import psycopg

    with psycopg.connect(postgres.url) as conn:
        found = conn.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert found is None  # nothing was created
    create(url)
    try:
        res = tether(tmp_path, "runs", "list", "--json", db=url)
        assert res.returncode == 0 and json.loads(res.stdout) == []
    finally:
        postgres.drop_schema(schema)


async def _saga(wf: Workflow) -> None:
    await wf.step("reserve", lambda: "R", compensate=lambda r: None)
    try:
        await wf.step("pay", _declined)
    except ValueError as exc:
        raise RuntimeError("order failed") from exc


def _declined() -> None:
    raise ValueError("card declined")


def test_runs_show_says_why_a_run_ended_and_its_error_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)
    app.workflow(name="saga")(_saga)
    with pytest.raises(RuntimeError):
        app.run(_saga, workflow_id="s1")
    app.close()
    shown = invoke("--db", url, "runs", "show", "s1")
    assert shown.exit_code == 0, shown.output
    assert re.search(r"status\s+compensated", shown.output), shown.output
    assert re.search(r"ended\s+failed", shown.output), shown.output
    assert "RuntimeError: order failed <- ValueError: card declined" in shown.output
    data = json.loads(invoke("--db", url, "runs", "show", "s1", "--json").output)
    assert data["endReason"] == "failed" and data["lastError"]["cause"]["type"] == "ValueError"
    (row,) = json.loads(invoke("--db", url, "runs", "list", "--json").output)
    assert row["endReason"] == "failed" and row["error"]["retryable"] is None


async def _kid(wf: Workflow, k: int) -> int:
    return await wf.step("c", lambda: k)


async def _fans_out(wf: Workflow, n: int) -> int:
    return sum([await wf.child(_kid, k) for k in range(n)])


def test_runs_show_lists_a_runs_children_and_a_childs_parent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    app = App(url)
    app.workflow(name="kid")(_kid)
    app.workflow(name="fans_out")(_fans_out)
    assert app.run(_fans_out, 22, workflow_id="p").value == sum(range(22))
    app.run(_fans_out, 0, workflow_id="lone")
    app.close()
    shown = invoke("--db", url, "runs", "show", "p")
    assert shown.exit_code == 0, shown.output
    assert "child runs (first 20 of 22)" in shown.output
    listed = re.findall(r"│ (p/kid#\d+)\s+│ kid\s+│ completed", shown.output)
    assert listed == [f"p/kid#{i}" for i in range(1, 21)], shown.output  # oldest first
    child = invoke("--db", url, "runs", "show", "p/kid#3")
    assert re.search(r"^parent\s+p\s*$", child.output, re.M), child.output
    assert "child runs" not in child.output
    assert "child runs" not in invoke("--db", url, "runs", "show", "lone").output


def test_listing_a_few_runs_does_not_read_the_whole_database(tmp_path: Path) -> None:
    # `runs list --limit 1` read every run, inputs included, and filtered them here: its
    # memory grew with the database (350 MB to list 3 of 300 runs of 1 MB each)
    small, large = f"sqlite:///{tmp_path}/small.db", f"sqlite:///{tmp_path}/large.db"
    payload = json.dumps("x" * 8_000_000)
    for url, runs in ((small, 1), (large, 24)):
        app = App(url)
        for i in range(runs):
            new = NewRun(workflow_id=f"big-{i:02}", workflow_name="load", input=payload)
            at = datetime.now(UTC) - timedelta(minutes=60 - i)
            app.run_sync(app.store.create_run(new, at))
        app.close()
    alone = peak_kib(tmp_path, small, "runs", "list", "--limit", "1")
    among = peak_kib(tmp_path, large, "runs", "list", "--limit", "1")
    assert among - alone < 60_000, (alone, among)  # 2 runs read, not all 24 (192 MB)
    shown = tether(tmp_path, "runs", "list", "--limit", "2", "--json", db=large)
    assert [r["workflowId"] for r in json.loads(shown.stdout)] == ["big-23", "big-22"]
    assert shown.stderr.startswith("2 of 24 runs (newest first)"), shown.stderr


def test_runs_list_json_has_the_same_keys_and_values_from_a_server(tmp_path: Path) -> None:
    """From a server the list printed the API's snake_case summaries (workflow_id, no
    input or output), from the database camelCase records (workflowId): a script
    written against one broke on the other."""
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db")
    try:
        with Client(served.url) as client:
            done = client.start("greet", {"name": "Cy"}, tags=["x"])
            failed = client.start("broken", None)
            waiting = client.start("waits", None)
            ended = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.WAITING}
            eventually_sync(
                lambda: {client.get_record(w).status for w in (done, failed, waiting)} == ended,
                timeout=30,
            )
        local = tether(tmp_path, "runs", "list", "--json", db=served.db)
        remote = tether(tmp_path, "runs", "list", "--json", "--server", served.url, use_db=False)
    finally:
        served.stop()
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    from_db, from_server = json.loads(local.stdout), json.loads(remote.stdout)
    assert [r["workflowId"] for r in from_server] == [waiting, failed, done]
    assert [list(r) for r in from_server] == [list(r) for r in from_db]
    assert all(r["computeSeconds"] is None for r in from_server)  # the API has no such field
    for r in from_db:
        r["computeSeconds"] = None
    assert from_server == from_db
    assert from_server[2]["output"] == "hi Cy" and from_server[1]["error"]["message"]


def _family(url: str) -> None:
    """Runs p1 and p2 of two tenants, p1 with three children, p2 with one."""
    import asyncio

    from tether.store import open_store

    async def make() -> None:
        store = open_store(url)
        await store.open()
        at = datetime(2026, 3, 1, tzinfo=UTC)
        for wid, tenant, parent in [
            ("p1", "acme", None),
            ("p2", "globex", None),
            *((f"p1/c{i}", "acme", "p1") for i in range(3)),
            ("p2/c0", "globex", "p2"),
        ]:
            run = NewRun(wid, "fam", state="null", tenant=tenant, parent_id=parent)
            await store.create_run(run, at)
            at += timedelta(seconds=1)
        await store.close()

    asyncio.run(make())


def test_runs_list_by_parent_and_tenant_here_and_from_a_server(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    _family(url)
    kids = invoke("--db", url, "runs", "list", "--parent", "p1", "--json")
    assert kids.exit_code == 0, kids.output
    assert [r["workflowId"] for r in json.loads(kids.output)] == ["p1/c2", "p1/c1", "p1/c0"]
    acme = invoke("--db", url, "runs", "list", "--tenant", "acme", "--parent", "p1", "--limit", "1")
    assert "p1/c2" in acme.output and "1 of 3 runs" in acme.output, acme.output
    assert "p2" not in invoke("--db", url, "runs", "list", "--tenant", "acme").output
    bad = invoke("--db", url, "runs", "list", "--parent", "")
    assert bad.exit_code == 2 and "--parent" in bad.output, bad.output
    served = start(tmp_path, url, flows=None)
    try:
        remote = tether(tmp_path, "runs", "list", "--json", "--parent", "p2", "--server",
                        served.url, use_db=False)  # fmt: skip
        globex = tether(tmp_path, "runs", "list", "--tenant", "globex", "--server", served.url,
                        use_db=False)  # fmt: skip
    finally:
        served.stop()
    assert remote.returncode == 0, remote.stderr
    assert [r["workflowId"] for r in json.loads(remote.stdout)] == ["p2/c0"]
    assert "p2/c0" in globex.stdout and "p1" not in globex.stdout, globex.stdout


def test_the_table_of_runs_does_not_read_their_inputs(tmp_path: Path, database_url: str) -> None:
    # `runs list` read every listed run's input, output and state to show ids and
    # statuses: 12 runs of 8 MB inputs, 96 MB read for a table of 12 rows
    app = App(database_url)
    for i in range(12):
        new = NewRun(f"big-{i:02}", "load", input=json.dumps("x" * 8_000_000))
        app.run_sync(app.store.create_run(new, datetime(2026, 3, 1, 0, i, tzinfo=UTC)))
    app.close()
    tracemalloc.start()
    try:  # what Python held at most: the table shows no input, nor reads one (8 MB)
        shown = invoke("--db", database_url, "runs", "list")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shown.exit_code == 0 and "big-11" in shown.output and "big-00" in shown.output
    assert peak < 4_000_000, peak
    whole = tether(tmp_path, "runs", "list", "--json", "--limit", "1", db=database_url)
    assert json.loads(whole.stdout)[0]["input"] == "x" * 8_000_000  # --json has them still


def _list_requests(served_log: str) -> list[str]:
    """The requests for pages of runs and for runs' records in a server's access log."""
    return re.findall(r'"GET (/api/v1/runs[^ ]*) HTTP', served_log)


def test_runs_list_json_from_a_server_asks_once_a_page(tmp_path: Path) -> None:
    """It asked for each run's record (input, output, state), one request a run."""
    served = start(tmp_path, f"sqlite:///{tmp_path}/t.db")
    try:
        with Client(served.url) as client:
            for n in range(3):
                client.start("greet", {"name": f"n{n}"}, workflow_id=f"g-{n}")
            eventually_sync(
                lambda: all(r.status is RunStatus.COMPLETED for r in client.iter_runs()),
                timeout=30,
            )
        asked = len(_list_requests(served.log))
        remote = tether(tmp_path, "runs", "list", "--json", "--server", served.url, use_db=False)
        one_page = _list_requests(served.log)[asked:]
        cut = tether(tmp_path, "runs", "list", "--json", "--limit", "2", "--server", served.url,
                     use_db=False)  # fmt: skip
        two_pages = _list_requests(served.log)[asked + len(one_page) :]
        local = tether(tmp_path, "runs", "list", "--json", db=served.db)
    finally:
        served.stop()
    assert remote.returncode == 0 and cut.returncode == 0, remote.stderr + cut.stderr
    assert one_page == ["/api/v1/runs?limit=50&fields=full"], one_page
    # the two runs shown with their payloads, then the rest counted from summaries
    assert two_pages[0] == "/api/v1/runs?limit=2&fields=full" and len(two_pages) == 2
    assert re.fullmatch(r"/api/v1/runs\?cursor=[\w-]+&limit=500", two_pages[1]), two_pages
    from_db = json.loads(local.stdout)
    for r in from_db:
        r["computeSeconds"] = None  # the API has no such field
    assert json.loads(remote.stdout) == from_db
    assert json.loads(cut.stdout) == from_db[:2] and "2 of 3 runs" in cut.stderr
    assert from_db[0]["output"] == "hi n2" and from_db[0]["input"] == {"name": "n2"}
