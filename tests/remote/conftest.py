from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..server._serve import Served
from ._procs import Tenant, start_orchestrator, start_tenant


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[Tenant]:
    t = start_tenant(tmp_path)
    yield t
    t.stop()


@pytest.fixture
def orchestrator(tmp_path: Path, tenant: Tenant) -> Iterator[Served]:
    s = start_orchestrator(tmp_path, tenant)
    yield s
    s.stop()
