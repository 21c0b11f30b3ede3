"""Bad input to the public API (issue 18): an `InvalidArgumentError` that says what was
wrong and how to fix it, raised before anything is created or changed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

import tether
from tether import App, FakeClock, InvalidArgumentError, Workflow


def _clear(exc: BaseException, *named: str) -> None:
    """tether's own error, one line, naming what was wrong; never a pydantic link."""
    text = str(exc)
    assert isinstance(exc, InvalidArgumentError), f"{type(exc).__name__}: {text}"
    for name in named:
        assert name in text, f"{name!r} not named in: {text}"
    assert "\n" not in text and "pydantic.dev" not in text, text


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder with no database URL in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TETHER_DATABASE_URL", raising=False)
    return tmp_path


@pytest.fixture
def sync_app(sqlite_url: str) -> Iterator[App]:
    app = App(sqlite_url, clock=FakeClock())
    yield app
    app.close()


@pytest.fixture
async def sqlite_app(sqlite_url: str) -> AsyncIterator[App]:
    app = App(sqlite_url, clock=FakeClock())
    yield app
    await app.aclose()


async def echo(wf: Workflow, n: int = 0) -> int:
    return n


# -- App(...) ---------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
def test_a_sqlite_url_without_a_file_is_refused_not_read_as_memory(in_tmp: Path, url: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        App(url)
    _clear(caught.value, repr(url), "sqlite:///:memory:", "durable")
    assert list(in_tmp.iterdir()) == []
    App("sqlite:///:memory:").close()  # asking for memory explicitly still works


@pytest.mark.parametrize("where", ["/nonexistent/dir/x.db", "{tmp}/missing/dir/x.db"])
def test_a_sqlite_file_in_a_missing_folder_is_refused(in_tmp: Path, where: str) -> None:
    path = where.format(tmp=in_tmp)
    with pytest.raises(InvalidArgumentError) as caught:
        App(f"sqlite:///{path}")
    _clear(caught.value, str(Path(path).parent), "does not exist", "mkdir -p")
    assert not Path(path).parent.exists() and list(in_tmp.iterdir()) == []


def test_the_default_folder_is_still_made_on_first_use(in_tmp: Path) -> None:
    app = App()
    try:
        assert app.list_runs() == []
    finally:
        app.close()
    assert (in_tmp / ".tether" / "tether.db").is_file()


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ("statement_timeout=-1", "statement_timeout"),
        ("connect_timeout=-1", "connect_timeout"),
        ("sslmode=bogus", "sslmode"),
    ],
)
def test_a_bad_postgres_option_is_refused_before_connecting(option: str, named: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidArgumentError) as caught:
        App(f"postgresql://127.0.0.1:5432/test?schema=t_never_made&{option}")
    _clear(caught.value, named, "e.g. ?")
    assert time.monotonic() - started < 1.0  # no connection was tried


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        ((123,), {}, "database URL must be a str"),
        ((), {"clock": "now"}, "clock"),
        ((), {"inline_wait": -1}, "inline_wait"),
        ((), {"resume_woken": "yes"}, "resume_woken"),
        ((), {"sinks": [object()]}, "sinks"),
    ],
    ids=["url-int", "clock-str", "inline_wait-negative", "resume_woken-str", "sinks-object"],
)
def test_bad_app_options_are_refused(
    in_tmp: Path, args: tuple[Any, ...], kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        App(*args, **kwargs)
    _clear(caught.value, named)
    assert list(in_tmp.iterdir()) == []


# -- @app.workflow ---------------------------------------------------------------------------


async def _no_params() -> None:
    return None


async def _two_inputs(wf: Workflow, a: int, b: int) -> None:
    return None


@pytest.mark.parametrize(
    ("fn", "kwargs", "named"),
    [
        (_no_params, {}, "takes no parameters"),
        (_two_inputs, {}, "gather a, b into one input"),
        (echo, {"name": ""}, "workflow name"),
        (echo, {"name": 123}, "workflow name"),
        (echo, {"version": 2}, "version='2'"),
        (echo, {"version": "3", "compatible": "12"}, "compatible=['12']"),
    ],
    ids=["no-params", "two-inputs", "name-empty", "name-int", "version-int", "compatible-str"],
)
def test_a_bad_workflow_definition_is_refused(
    sync_app: App, fn: Any, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        sync_app.workflow(**kwargs)(fn)
    _clear(caught.value, named)
    assert sync_app.workflows == {}


# -- inside a workflow -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda wf: wf.step("s", None), "step 's': fn must be callable"),
        (lambda wf: wf.step("s", 42), "step 's': fn must be callable"),
        (lambda wf: wf.for_each(None, lambda x: x), "for_each needs an iterable"),
        (lambda wf: wf.for_each(5, lambda x: x), "for_each needs an iterable"),
    ],
    ids=["step-None", "step-int", "for_each-None", "for_each-int"],
)
async def test_a_bad_step_or_for_each_is_refused_in_the_workflow(
    sqlite_app: App, call: Any, named: str
) -> None:
    async def flow(wf: Workflow) -> None:
        await call(wf)

    with pytest.raises(InvalidArgumentError) as caught:
        await sqlite_app.arun(flow, workflow_id="bad-call")
    _clear(caught.value, named)
    assert (await sqlite_app.aget_record("bad-call")).steps == {}


@pytest.mark.parametrize("inside", [False, True], ids=["in-the-run", "in-a-step"])
@pytest.mark.parametrize("kind", ["workflow.completed", "stage.completed", "job.ghost"])
async def test_an_event_in_the_engines_own_namespace_is_refused(
    sqlite_app: App, kind: str, inside: bool
) -> None:
    """A run's own `workflow.completed` or `stage.completed` would be read back by the
    dashboard, tracing and the stage records as what the engine did."""

    async def flow(wf: Workflow) -> str:
        await wf.append_event("app.before", "kept")
        if inside:
            await wf.step("s", lambda: wf.append_event(kind, "forged"))
        else:
            await wf.append_event(kind, "forged")
        return "done"

    with pytest.raises(InvalidArgumentError) as caught:
        await sqlite_app.arun(flow, workflow_id=f"forged-{kind}-{inside}")
    _clear(caught.value, repr(kind), "namespace of your own")
    record = await sqlite_app.aget_record(f"forged-{kind}-{inside}")
    assert [e.message for e in record.events if e.type == "app.before"] == ["kept"]
    assert not [e for e in record.events if e.message == "forged"]


async def test_an_event_named_like_the_engines_without_its_namespace_is_kept(
    sqlite_app: App,
) -> None:
    async def flow(wf: Workflow) -> None:
        for kind in ("job.found", "workflow_completed", "steps.done", "progress"):
            await wf.append_event(kind)

    await sqlite_app.arun(flow, workflow_id="own-events")
    kinds = [e.type for e in (await sqlite_app.aget_record("own-events")).events]
    assert {"job.found", "workflow_completed", "steps.done", "progress"} <= set(kinds)


@pytest.mark.timeout(30)  # without the check this waited for itself until the mutex timeout
async def test_a_mutex_taken_again_inside_its_for_each_item_fails_fast(sqlite_app: App) -> None:
    async def flow(wf: Workflow) -> None:
        async def item(x: int) -> None:
            async with wf.mutex("c"):
                pass

        await wf.for_each([1, 2], item, mutex_key=lambda x: "c")

    started = time.monotonic()
    with pytest.raises(tether.ForEachError) as caught:
        await sqlite_app.arun(flow, workflow_id="reentrant")
    assert time.monotonic() - started < 10
    _clear(caught.value.first_error, "already holds mutex 'c'", "not re-entrant")


@pytest.mark.timeout(30)
async def test_a_nested_mutex_of_the_same_key_fails_fast_but_branches_still_wait(
    sqlite_app: App,
) -> None:
    async def nested(wf: Workflow) -> None:
        async with wf.mutex("k", timeout=600):  # noqa: SIM117 -- nested on purpose
            async with wf.mutex("k", timeout=600):
                pass

    with pytest.raises(InvalidArgumentError, match="already holds mutex 'k'"):
        await sqlite_app.arun(nested, workflow_id="nested")

    async def branches(wf: Workflow) -> list[int]:  # concurrent items take turns: no error
        async def item(x: int) -> int:
            async with wf.mutex("shared"):
                await asyncio.sleep(0.01)
            return x

        return (await wf.for_each([1, 2, 3], item, max_parallel=3)).values  # type: ignore[return-value]

    assert (await sqlite_app.arun(branches, workflow_id="branches")).value == [1, 2, 3]


# -- submit, start, run, result ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"queue": ""}, "queue must be a non-empty string"),
        ({"priority": "high"}, "priority must be an integer"),
        ({"concurrency_key": 5}, "concurrency_key must be a non-empty string"),
        ({"workflow_id": ""}, "workflow_id must be a non-empty string"),
        ({"idempotency_key": ""}, "idempotency_key must be a non-empty string"),
        ({"priority": 10**30}, "priority must be an integer from"),
        ({"max_attempts": 2**40}, "max_attempts must be an integer from 1 to"),
        ({"run_after": datetime(2030, 1, 1)}, "run_after must be a datetime with a time zone"),
        # before year 1 in UTC: accepted, then every worker that claimed it crashed
        (
            {"run_after": datetime.min.replace(tzinfo=timezone(timedelta(hours=1)))},
            "outside the years 1 to 9998 in UTC",
        ),
        (
            {"run_after": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))},
            "outside the years 1 to 9998 in UTC",
        ),
        # a NUL failed on PostgreSQL as an unavailable store (503 over the API)
        ({"tenant": "x\x00y"}, "contains a NUL character"),
        ({"tags": ["ok", "a\x00"]}, "contains a NUL character"),
    ],
    ids=[
        "queue-empty",
        "priority-str",
        "concurrency_key-int",
        "workflow_id-empty",
        "key-empty",
        "priority-huge",
        "max_attempts-huge",
        "run_after-naive",
        "run_after-before-year-1",
        "run_after-after-9999",
        "tenant-nul",
        "tag-nul",
    ],
)
def test_bad_submit_arguments_are_tethers_error_not_pydantics(
    sync_app: App, kwargs: dict[str, Any], named: str
) -> None:
    sync_app.workflow(echo)
    with pytest.raises(InvalidArgumentError) as caught:
        sync_app.submit(echo, 1, **kwargs)
    _clear(caught.value, named)
    assert sync_app.list_runs() == []


@pytest.mark.parametrize(
    ("how", "kwargs"),
    [
        ("run", {"workflow_id": ""}),
        ("start", {"workflow_id": ""}),
        ("start", {"idempotency_key": ""}),
    ],
)
def test_an_empty_id_or_key_is_refused_not_replaced(
    sync_app: App, how: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        getattr(sync_app, how)(echo, 1, **kwargs)
    _clear(caught.value, f"{next(iter(kwargs))} must be a non-empty string")
    assert sync_app.list_runs() == []


@pytest.mark.parametrize("timeout", [-1, float("nan"), "10"])
def test_a_bad_result_timeout_is_refused(sync_app: App, timeout: Any) -> None:
    sync_app.run(echo, 1, workflow_id="done")
    with pytest.raises(InvalidArgumentError) as caught:
        sync_app.result("done", timeout=timeout)
    _clear(caught.value, "timeout must be a number of seconds >= 0")


@pytest.mark.parametrize("how", ["submit", "start"])
def test_an_idempotency_key_reused_with_another_input_is_a_conflict(
    sync_app: App, how: str
) -> None:
    sync_app.workflow(echo)
    create = getattr(sync_app, how)
    first = create(echo, 1, idempotency_key="k1")
    assert create(echo, 1, idempotency_key="k1") == first  # the same request: the same run
    with pytest.raises(tether.IdempotencyConflictError) as caught:
        create(echo, 2, idempotency_key="k1")
    _clear(caught.value, "'k1'", repr(first), "different input")
    assert caught.value.key == "k1" and caught.value.workflow_id == first
    assert [r.workflow_id for r in sync_app.list_runs()] == [first]


@pytest.mark.parametrize("how", ["submit", "start"])
def test_an_idempotency_key_reused_for_another_run_id_or_workflow_is_a_conflict(
    sync_app: App, how: str
) -> None:
    """Before: another workflow id with the same key returned the key's run (a run of
    the id asked for did not exist), and another workflow was told to choose another
    workflow_id, one the caller never gave."""

    async def refund(wf: Workflow, n: int) -> int:
        return -n

    sync_app.workflow(echo)
    sync_app.workflow(refund)
    create = getattr(sync_app, how)
    assert create(echo, 1, workflow_id="order-1", idempotency_key="k2") == "order-1"
    assert create(echo, 1, workflow_id="order-1", idempotency_key="k2") == "order-1"
    assert create(echo, 1, idempotency_key="k2") == "order-1"  # no id asked: the key's run
    with pytest.raises(tether.IdempotencyConflictError) as caught:
        create(echo, 1, workflow_id="order-2", idempotency_key="k2")
    _clear(caught.value, "'k2'", "'order-1'", "different workflow id")
    with pytest.raises(tether.IdempotencyConflictError) as caught:
        create(refund, 1, idempotency_key="k2")
    _clear(caught.value, "'k2'", "'order-1'", "different workflow")
    assert [r.workflow_id for r in sync_app.list_runs()] == ["order-1"]


def test_a_missing_postgres_driver_says_how_to_install_it(in_tmp: Path) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"  # as if the driver were not installed
        "import tether\n"
        "try:\n"
        "    tether.App('postgresql://127.0.0.1:5432/test')\n"
        "except tether.InvalidArgumentError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "PostgreSQL driver (psycopg is not installed)" in done.stdout, done.stdout
    assert "pip install -e '.[postgres]'" in done.stdout
    assert "pip install 'tether[postgres] @ git+<repository URL>'" in done.stdout


@pytest.mark.parametrize("value", ["0\x1f", "5\x1f", " 10", "1e3", "-1", "0"])
def test_a_pool_size_that_is_not_a_plain_positive_integer_is_refused(value: str) -> None:
    url = f"postgresql://127.0.0.1:1/x?pool_size={quote(value)}"
    with pytest.raises(tether.InvalidArgumentError, match="pool_size must be an integer >= 1"):
        tether.App(url)
