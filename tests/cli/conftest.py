from __future__ import annotations

from pathlib import Path

import pytest

from ._helpers import FLOW


@pytest.fixture
def flow(tmp_path: Path) -> Path:
    path = tmp_path / "flows.py"
    path.write_text(FLOW)
    return path
