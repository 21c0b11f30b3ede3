"""`import tether.agents` without the agents extra says which extra to install: it was
a bare "No module named 'yaml'", which named no fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests._env import child_pythonpath


@pytest.mark.parametrize("missing", ["yaml", "liquid", "httpx"])
def test_importing_the_agents_layer_without_its_extra_names_the_extra(missing: str) -> None:
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"  # as if not installed
        "try:\n"
        "    import tether.agents\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc.name, '|', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": child_pythonpath()},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    name, _, said = done.stdout.strip().partition(" | ")
    assert name == missing
    assert "pip install 'tether[agents]'" in said and repr(missing) in said, said
