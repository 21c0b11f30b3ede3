"""A queue name with a control character is refused where it enters, as one with a
comma is: `tether worker -q` could be given it only quoted as $'a\\nb', and it split
the worker's start hint (and a table's row) over two lines."""

from __future__ import annotations

import pytest

import tether
from tether import App, Workflow
from tether.schedules import Schedule
from tether.worker import Worker


@pytest.mark.parametrize("queue", ["a\nb", "night\tly", "batch\x1b[31m"])
async def test_a_queue_named_with_a_control_character_is_refused(app: App, queue: str) -> None:
    @app.workflow(name="one")
    async def one(wf: Workflow) -> int:
        return 1

    with pytest.raises(tether.InvalidArgumentError, match="contains a control character"):
        await app.asubmit(one, queue=queue)
    with pytest.raises(tether.InvalidArgumentError, match="contains a control character"):
        app.queue(queue, concurrency=1)
    with pytest.raises(tether.InvalidArgumentError, match="contains a control character"):
        Schedule("nightly", "one", cron="0 2 * * *", queue=queue)
    with pytest.raises(tether.InvalidArgumentError, match="contains a control character"):
        Worker(app, queues=[queue])
    assert await app.alist_runs() == []  # nothing made
