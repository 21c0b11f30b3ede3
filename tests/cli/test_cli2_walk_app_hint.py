"""`--app` naming the wrong thing: the hint lists the Apps there (not workflows), or
says how to make one, and names what was found in plain words."""

from __future__ import annotations

from pathlib import Path

from ._helpers import tether


def test_a_missing_app_name_lists_the_apps_not_the_workflows(tmp_path: Path, flow: Path) -> None:
    done = tether(tmp_path, "worker", "--app", f"{flow}:nope")
    assert done.returncode == 2
    # before: "...; async functions there: broken, greet, ..." (workflows, where an App is wanted)
    assert f"has no 'nope'; Apps there: app (e.g. --app {flow}:app)" in done.stderr
    assert "async functions" not in done.stderr


def test_a_value_that_is_no_app_is_named_and_the_way_to_make_one_given(tmp_path: Path) -> None:
    path = tmp_path / "noapp.py"
    path.write_text("x = 5\n")
    done = tether(tmp_path, "worker", "--app", f"{path}:x")
    assert done.returncode == 2
    # before: "noapp.py:x is a int, not a tether.App; name the App, e.g. flows.py:app"
    assert f"{path}:x is 5 (an int), not a tether.App" in done.stderr
    assert "it defines no tether.App; make one" in done.stderr
    assert f"--app {path}:app" in done.stderr


def test_an_app_without_its_name_asks_for_the_app_not_a_function(
    tmp_path: Path, flow: Path
) -> None:
    done = tether(tmp_path, "worker", "--app", str(flow))
    assert done.returncode == 2
    # before: "... names no function: give FILE.py:FUNC ..., e.g. flows.py:main"
    assert "names no App: give FILE.py:APP" in done.stderr
    assert "e.g. flows.py:app" in done.stderr and "FUNC" not in done.stderr
