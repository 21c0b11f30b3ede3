"""How a step function is read: sync or async, and whether it takes a `StepContext`."""

from __future__ import annotations

import functools
import gc
import weakref
from typing import Any

from tether import App, StepContext, Workflow
from tether._steps import is_async, wants_context


class _Document:
    """Something large a step function holds."""


async def fetch(doc: _Document, ctx: StepContext) -> int:
    return ctx.attempt


def render(doc: _Document, *, width: int = 80) -> int:
    return width


class Handler:
    def __init__(self, doc: _Document) -> None:
        self.doc = doc

    async def handle(self, ctx: StepContext) -> int:
        return ctx.attempt

    def plain(self) -> int:
        return 1


class AsyncCallable:
    def __init__(self, doc: _Document) -> None:
        self.doc = doc

    async def __call__(self) -> int:
        return 2


def test_each_kind_of_step_function_is_read_right() -> None:
    doc = _Document()
    cases: list[tuple[Any, bool, bool]] = [  # (fn, async, takes a context)
        (lambda: 1, False, False),
        (lambda ctx: ctx.attempt, False, True),
        (functools.partial(fetch, doc), True, True),
        (functools.partial(fetch, doc, ctx=None), True, False),
        (functools.partial(render, doc), False, False),
        (functools.partial(render, width=3), False, True),
        (Handler(doc).handle, True, True),
        (Handler(doc).plain, False, False),
        (AsyncCallable(doc), True, False),
        (functools.partial(functools.partial(fetch, doc)), True, True),
        (print, False, False),
    ]
    for fn, asynchronous, ctx in cases:
        assert (is_async(fn), wants_context(fn)) == (asynchronous, ctx), fn


def test_reading_a_step_function_keeps_nothing_it_holds_alive() -> None:
    """A partial, a bound method or a callable object made for one step (holding the
    document it works on) is not kept by a cache once the step is done with it."""
    gone: list[weakref.ref[_Document]] = []
    for _ in range(3):
        doc = _Document()
        gone.append(weakref.ref(doc))
        for fn in (functools.partial(fetch, doc), Handler(doc).handle, AsyncCallable(doc)):
            is_async(fn)
            wants_context(fn)
        del doc, fn
    gc.collect()
    assert [ref() for ref in gone] == [None, None, None]


async def test_partials_and_methods_run_as_steps(app: App) -> None:
    doc = _Document()
    handler = Handler(doc)

    @app.workflow()
    async def flow(wf: Workflow) -> list[int]:
        return [
            await wf.step("fetch", functools.partial(fetch, doc)),
            await wf.step("render", functools.partial(render, doc, width=7)),
            await wf.step("handle", handler.handle),
            await wf.step("call", AsyncCallable(doc)),
        ]

    assert (await app.arun(flow)).value == [1, 7, 1, 2]
