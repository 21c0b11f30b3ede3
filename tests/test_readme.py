"""README.md works verbatim: every code block in it is run, in order, by this test.

Python blocks run in one namespace, top to bottom, in a temporary project (a
copy of `examples/` and, as `.venv`, the venv running the tests: a checkout
after ``make demo``);
shell blocks run line by line in bash there, with the venv *not* on PATH
unless the README activated it. A block that is a fragment to read, not run,
carries ``<!-- not-run: reason -->`` on the line before its fence; a block
that is a whole test file carries ``<!-- run: pytest -->`` and is run by
pytest in a project of its own. A README that drifts from the code fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = Path(sys.prefix)  # the venv running the tests (make test: the checkout's .venv)

# Shell commands this test does not run, and why (matched on the start of the line).
NOT_RUN = {
    "make test": "runs this very suite (ruff, mypy, pytest): it would run itself",
    "pip install": "installs packages; tether is already installed in the test's venv",
}
# Commands run as what they stand for.
STAND_INS = {
    # the Makefile's demo target; make itself would need the checkout's Makefile
    "make demo": ".venv/bin/python examples/apply_batch.py",
}
# Commands that serve until stopped: run this many seconds, then SIGTERM; they must exit 0.
SERVING = {"tether worker": 4.0}
# The languages of code blocks; a fence without a language is text (the layout tree).
LANGS = {"python", "sh", "bash"}
MARKER = re.compile(r"^<!--\s*(not-run:\s*\S.*?|run:\s*pytest)\s*-->$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence
    lang: str
    code: str
    marker: str | None
    section: str


def readme_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        if line.startswith("```"):
            lang = line[3:].strip()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            before = lines[i - 1].strip() if i else ""
            found = MARKER.match(before)
            marker = re.sub(r"\s+", " ", found[1]) if found else None
            if lang:
                blocks.append(
                    Block(i + 1, lang, "\n".join(lines[i + 1 : end]) + "\n", marker, section)
                )
            i = end + 1
            continue
        i += 1
    return blocks


BLOCKS = readme_blocks(README.read_text())


def test_every_code_block_is_runnable_or_marked() -> None:
    assert BLOCKS, "no code blocks found in README.md"
    for b in BLOCKS:
        assert b.lang in LANGS, f"README.md:{b.line}: ```{b.lang} blocks are not run; add it here"
    not_run = [b for b in BLOCKS if b.marker and b.marker.startswith("not-run")]
    assert len(not_run) <= 2, f"fragments not run should stay rare: {not_run}"
    stray = [
        n + 1
        for n, line in enumerate(README.read_text().splitlines())
        if "not-run" in line and not MARKER.match(line.strip())
    ]
    assert not stray, f"malformed not-run marker at README.md lines {stray}"


def _postgres_available() -> bool:
    try:
        from ._postgres import _try

        url = os.environ.get("TETHER_TEST_POSTGRES_URL") or "postgresql://127.0.0.1:5432/test"
        return _try(url) is None
    except ImportError:
        return False


def _block_defining(name: str) -> Block:
    return next(b for b in BLOCKS if b.lang == "python" and f"def {name}(" in b.code)


def _reader_files() -> dict[str, dict[str, str]]:
    """Files the README tells its reader to create, written before the block that uses them."""
    worker_code = _block_defining("fix_issue")
    uses = next(b for b in BLOCKS if "--app myproject.flows:app" in b.code)
    flows = "import tether\n\napp = tether.App()\n\n" + worker_code.code
    return {str(uses.line): {"myproject/flows.py": flows}}


@pytest.mark.timeout(600)
def test_the_readme_runs_verbatim(tmp_path: Path) -> None:
    if not (VENV / "bin" / "tether").exists():
        pytest.skip("needs a virtualenv with tether installed (make .venv/.installed)")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "examples", project / "examples")
    (project / ".venv").symlink_to(VENV)
    plan = {
        "blocks": [asdict(b) for b in BLOCKS],
        "not_run": NOT_RUN,
        "stand_ins": STAND_INS,
        "serving": SERVING,
        "postgres": _postgres_available(),
        "files": _reader_files(),
    }
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    venv_bin = str(VENV / "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TETHER_DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH")
        and not k.startswith("PYTEST_")
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != Path(venv_bin)
    )
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("_readme_driver.py")), str(plan_file)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "README ran to its end" in done.stdout
