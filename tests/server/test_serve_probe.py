"""What a new user of `tether serve` met: a server that had driven nothing yet was
not known as a driver of its workflows (so a signal said nothing would drive the
run, and the queues page and `tether top` said no process was alive)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tether import Client, RunStatus
from tether.testing import eventually_sync

from ._serve import FLOWS, start, tether


def test_a_server_says_at_once_that_it_drives_its_workflows(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    (tmp_path / "flows.py").write_text(FLOWS)
    parked = tether(tmp_path, db, "run", "flows.py:waits", "--id", "w-1")  # another process
    assert parked.returncode == 0 and '"waiting"' in parked.stdout, parked.stderr
    served = start(tmp_path, db)
    try:

        def announced() -> list[str]:
            workers = httpx.get(served.url + "/api/v1/workers").json()
            assert workers, "the server is not among the live processes"
            return [name for w in workers for name in w["workflows"]]

        assert "waits" in eventually_sync(announced, timeout=30)
        sent = tether(tmp_path, db, "runs", "signal", "w-1", "go")
        assert sent.returncode == 0, sent.stderr
        assert "driven by" in sent.stdout and "nothing drives it" not in sent.stdout, sent.stdout

        def completed() -> bool:
            with Client(served.url) as client:
                return client.get_record("w-1").status is RunStatus.COMPLETED

        eventually_sync(completed, timeout=30)  # and it was: the server took it up
    finally:
        served.stop()
