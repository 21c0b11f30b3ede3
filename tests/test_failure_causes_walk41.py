"""A failed run's error, raised again from its record, keeps its ``__cause__`` chain."""

from __future__ import annotations

import pytest

from tether import App, FakeClock, Workflow


class Declined(Exception):
    pass


async def test_a_failed_runs_error_raised_again_keeps_its_causes(database_url: str) -> None:
    async def charge(wf: Workflow) -> None:
        try:
            {}["card"]
        except KeyError as exc:
            raise Declined("no card") from exc

    async with App(database_url, clock=FakeClock()) as app:
        app.workflow(charge)
        with pytest.raises(Declined) as first:
            await app.arun(charge, workflow_id="c1")
        assert isinstance(first.value.__cause__, KeyError)
    async with App(database_url, clock=FakeClock()) as again:  # what another process reads
        again.workflow(charge)
        with pytest.raises(Declined) as replayed:
            await again.arun(charge, workflow_id="c1")
    cause = replayed.value.__cause__
    assert isinstance(cause, KeyError) and str(cause) == str(first.value.__cause__)


async def test_a_not_serializable_error_raised_again_names_its_type(database_url: str) -> None:
    """Rebuilt from its record, it had no ``offending_type`` at all (a type is not
    stored): reading it raised AttributeError. It keeps the type's name."""
    from tether import NotSerializableError

    async def hands_back(wf: Workflow) -> None:
        await wf.step("s", lambda: object())

    async with App(database_url, clock=FakeClock()) as app:
        app.workflow(hands_back)
        with pytest.raises(NotSerializableError) as first:
            await app.arun(hands_back, workflow_id="n1")
        assert first.value.offending_type is object
        assert first.value.type_name == "builtins.object"
    async with App(database_url, clock=FakeClock()) as again:
        again.workflow(hands_back)
        with pytest.raises(NotSerializableError) as replayed:
            await again.arun(hands_back, workflow_id="n1")
    assert replayed.value.offending_type is None
    assert replayed.value.type_name == "builtins.object"
    assert str(replayed.value) == str(first.value)
