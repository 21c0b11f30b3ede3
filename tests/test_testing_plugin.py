"""tether's pytest plugin in a fresh project: no conftest, no configuration, no async
plugin needed for an ``async def`` test that uses tether's fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = """
import asyncio
import tether

async def flow(wf: tether.Workflow) -> int:
    return await wf.step("one", lambda: 1)

async def test_async_with_the_app(tether_app, tether_clock):
    result = await tether_app.arun(flow, workflow_id="t")
    assert result.value == 1 and result.record.status.value == "completed"
    tether_clock.advance(60)

async def test_async_with_the_clock_only(tether_clock):
    before = tether_clock.now()
    await tether_clock.sleep(3600)  # skips ahead, no real wait
    assert (tether_clock.now() - before).total_seconds() == 3600

def test_sync_with_the_app(tether_app):
    assert tether_app.list_runs() == []
"""


def _pytest(project: Path, *plugins: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("TETHER_DATABASE_URL", None)
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins),
            *("--rootdir", str(project), "-c", str(project / "pytest.ini"), str(project)),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "plugins",
    [(), ("-p", "no:asyncio")],
    ids=["pytest-asyncio-installed-strict", "no-async-plugin"],
)
def test_async_tests_with_tether_fixtures_run_without_configuration(
    tmp_path: Path, plugins: tuple[str, ...]
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_flows.py").write_text(TESTS)
    done = _pytest(tmp_path, *plugins)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout, done.stdout


def test_pytest_asyncio_still_runs_the_tests_it_is_asked_to(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    (tmp_path / "test_flows.py").write_text(TESTS)
    done = _pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout, done.stdout


ANYIO_TESTS = """
import pytest
import tether

async def flow(wf: tether.Workflow) -> int:
    return await wf.step("one", lambda: 1)

@pytest.mark.anyio
async def test_marked_for_anyio(tether_app):
    assert (await tether_app.arun(flow, workflow_id="t")).value == 1
"""


def test_anyio_on_a_backend_other_than_asyncio_fails_saying_how_to_keep_asyncio(
    tmp_path: Path,
) -> None:
    """anyio runs a marked test on each backend installed; tether_app on trio fails
    naming the fixture that keeps the test on asyncio, not "no current event loop"."""
    pytest.importorskip("trio")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_flows.py").write_text(ANYIO_TESTS)
    done = _pytest(tmp_path, "-p", "no:asyncio")
    assert "1 passed, 1 error" in done.stdout, done.stdout
    assert "ERROR test_flows.py::test_marked_for_anyio[trio]" in done.stdout
    assert "tether_app runs on asyncio, not on anyio's 'trio' backend" in done.stdout
    assert "def anyio_backend(): return 'asyncio'" in done.stdout
    assert "no current event loop" not in done.stdout

    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n"
    )
    done = _pytest(tmp_path, "-p", "no:asyncio")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout, done.stdout


OPTIONS_CONFTEST = """
import pytest
from tether import ai

@pytest.fixture
def tether_app_options():
    return {"ai": ai.Providers(fake=ai.FakeModel(["from the conftest"]))}
"""

OPTIONS_TESTS = """
import pytest
import tether

async def ask(wf: tether.Workflow) -> str:
    return (await wf.ai.generate_text("fake:small", prompt="hi")).text

async def test_the_app_has_the_options_of_the_conftest(tether_app):
    assert (await tether_app.arun(ask, workflow_id="a")).value == "from the conftest"
    assert tether_app.shutdown_grace == 0

class TestAModuleOverride:
    @pytest.fixture
    def tether_app_options(self):
        return {"inline_wait": 0, "shutdown_grace": 2}

    def test_the_nearest_override_wins(self, tether_app):
        assert tether_app.ai is None and tether_app.shutdown_grace == 2

"""


def test_tether_app_options_configures_the_fixture_app(tmp_path: Path) -> None:
    """Before: `tether_app` took only a clock; a test needing `ai=` or `interceptors=`
    built its own App and lost the fixture's loop and close handling."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(OPTIONS_CONFTEST)
    (tmp_path / "test_options.py").write_text(OPTIONS_TESTS)
    done = _pytest(tmp_path, "-p", "no:asyncio")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ('{"clock": None}', "override tether_clock instead"),
        ('{"interceptor": []}', "an option App does not take: 'interceptor'"),
        ('["ai"]', "needs a dict of App options"),
    ],
    ids=["clock", "unknown", "not-a-dict"],
)
def test_bad_tether_app_options_fail_saying_what_to_do(
    tmp_path: Path, options: str, said: str
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_bad.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef tether_app_options():\n"
        f"    return {options}\n\ndef test_it(tether_app):\n    pass\n"
    )
    done = _pytest(tmp_path, "-p", "no:asyncio")
    assert "1 error" in done.stdout, done.stdout
    assert said in done.stdout, done.stdout
