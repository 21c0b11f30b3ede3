from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tether

from ..server._serve import Served
from ._procs import Tenant, start_orchestrator, start_tenant


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Tenant]]:
    """A tenant and an orchestrator shared by a module's tests (each test uses runs
    of its own; the tenant's side effects are kept per run)."""
    folder = tmp_path_factory.mktemp("remote")
    tenant = start_tenant(folder)
    served = start_orchestrator(folder, tenant)
    yield served, tenant
    served.stop()
    tenant.stop()


@pytest.fixture
def orchestrator(pair: tuple[Served, Tenant]) -> Served:
    return pair[0]


@pytest.fixture
def tenant(pair: tuple[Served, Tenant]) -> Tenant:
    return pair[1]


@pytest.fixture
def own_pair(tmp_path: Path) -> Iterator[tuple[Served, Tenant]]:
    """A tenant and an orchestrator for one test (one that kills the tenant)."""
    tenant = start_tenant(tmp_path)
    served = start_orchestrator(tmp_path, tenant)
    yield served, tenant
    served.stop()
    tenant.stop()


@pytest.fixture
def app(database_url: str) -> Iterator[tether.App]:
    """The orchestrator in this process, on each backend (a module with listeners or
    interceptors defines its own)."""
    a = tether.App(database_url, inline_wait=0)
    yield a
    a.close()
