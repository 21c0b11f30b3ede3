"""What a user who installs the built wheel gets, not the editable checkout.

The sdist and the wheel are built from this checkout with hatchling's own build
hooks (no build isolation, no network); the wheel is unpacked outside the
repository and tether is run from there, on SQLite and on PostgreSQL: its
migrations, named queries, dashboard templates and static files must come from
the wheel. A packaging walk found the sdist carrying tests/, bench/ and the
.hypothesis/ cache; it now holds the package, pyproject.toml and README.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

pytest.importorskip(
    "hatchling.build",
    reason="hatchling (tether's build backend) is not installed: `pip install -e '.[dev]'`",
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tether"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
DIST = f"tether-{VERSION}"

BUILD = """
import sys
from hatchling.build import build_sdist, build_wheel
print(build_{target}(sys.argv[1]))
"""

# Run from the unpacked wheel, in an empty folder: the database URL is argv[1].
WALK = """
import asyncio, sys
from pathlib import Path
import httpx
import tether

async def main() -> None:
    app = tether.App(sys.argv[1])

    @app.workflow(name="hello", version="1")
    async def hello(wf: tether.Workflow, name: str) -> str:
        return await wf.step("greet", lambda: f"hello {name}")

    async with app:
        done = await app.arun(hello, "ada", workflow_id="pkg-1")
        transport = httpx.ASGITransport(app=app.asgi(allow_unauthenticated=True))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            page = await http.get("/runs/pkg-1")
            css = await http.get("/-/static/dash.css")
            js = await http.get("/-/static/dash.js")
    here = Path(tether.__file__).parent
    print(tether.__file__)
    print(tether.__version__)
    print(done.value, done.record.status)
    print(page.status_code, "hello ada" in page.text)
    print(css.status_code, css.content == (here / "server/static/dash.css").read_bytes())
    print(js.status_code, js.content == (here / "server/static/dash.js").read_bytes())

asyncio.run(main())
"""


def build(target: str, source: Path, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-c", BUILD.format(target=target), str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return out / done.stdout.strip().splitlines()[-1]


def package_files() -> set[str]:
    """Every file of src/tether a wheel should carry, relative to src/."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    return build("sdist", ROOT, out), build("wheel", ROOT, out)


def test_the_wheel_carries_the_package_its_data_files_and_nothing_else(
    built: tuple[Path, Path],
) -> None:
    _, wheel = built
    assert wheel.name == f"{DIST}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    info = {n for n in names if n.startswith(f"{DIST}.dist-info/")}
    assert {n for n in names if n not in info} == package_files()
    for kind in ("store/schema/sqlite/", "store/schema/postgresql/", "store/queries/"):
        assert any(n.startswith(f"tether/{kind}") and n.endswith(".sql") for n in names), kind
    assert any(n.startswith("tether/server/templates/") for n in names)
    assert {
        "tether/py.typed",
        "tether/server/static/dash.css",
        "tether/server/static/dash.js",
    } <= set(names)
    wheel_zip = zipfile.ZipFile(wheel)
    entry_points = wheel_zip.read(f"{DIST}.dist-info/entry_points.txt").decode()
    assert "[console_scripts]\ntether = tether.cli:main" in entry_points
    assert "[pytest11]\ntether = tether.testing" in entry_points
    metadata = wheel_zip.read(f"{DIST}.dist-info/METADATA").decode()
    assert f"\nVersion: {VERSION}\n" in metadata
    assert "\nProvides-Extra: postgres\n" in metadata
    assert "\nProvides-Extra: server\n" in metadata


def test_the_sdist_holds_the_package_and_builds_the_same_wheel_by_itself(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    sdist, wheel = built
    with tarfile.open(sdist) as archive:
        names = {m.name.removeprefix(f"{DIST}/") for m in archive.getmembers() if m.isfile()}
        archive.extractall(tmp_path, filter="data")
    top = {"PKG-INFO", "pyproject.toml", "README.md", ".gitignore"}
    assert names == top | {f"src/{n}" for n in package_files()}
    again = build("wheel", tmp_path / DIST, tmp_path / "out")
    assert sorted(zipfile.ZipFile(again).namelist()) == sorted(zipfile.ZipFile(wheel).namelist())


def test_tether_runs_and_serves_from_the_unpacked_wheel(
    built: tuple[Path, Path], tmp_path: Path, database_url: str
) -> None:
    _, wheel = built
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", WALK, database_url],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(site / "tether" / "__init__.py")
    assert lines[1:] == [VERSION, "hello ada completed", "200 True", "200 True", "200 True"]
