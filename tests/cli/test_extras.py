"""A command whose optional extra is not installed says which to install: no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_WITHOUT_YAML = (
    "import sys; sys.modules['yaml'] = None; sys.argv = ['tether', *sys.argv[1:]]; "
    "from tether.cli import main; main()"
)


def test_an_agents_command_without_the_agents_extra_says_how_to_install_it(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_YAML, "agents", "status"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'tether[agents]'" in done.stderr
    assert "Traceback" not in done.stderr
