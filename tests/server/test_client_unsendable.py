"""A request the client cannot write is refused before it is sent, as the App refuses
the same values in-process (`InvalidArgumentError`): a lone surrogate in a run id,
a name or a payload raised a bare UnicodeEncodeError, a non-ASCII API token or
Idempotency-Key too, and a newline in a key was raised as the server unreachable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tether import Client, InvalidArgumentError
from tether.server import AsyncClient

from ._serve import Served

SURROGATE = "x\ud800"
# each call with a lone surrogate where it goes: the path, the body, a header
CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    ("run id", lambda c: c.get_record(SURROGATE)),
    ("run id", lambda c: c.events(SURROGATE)),
    ("run id", lambda c: c.cancel(SURROGATE)),
    ("token id", lambda c: c.complete_token(SURROGATE)),
    ("input", lambda c: c.start("greet", {"name": SURROGATE})),
    ("signal name", lambda c: c.signal("some-run", SURROGATE)),
    ("event type", lambda c: c.send_event(SURROGATE)),
]
HEADER = "cannot be sent in an HTTP header"


def test_a_lone_surrogate_is_refused_before_it_is_sent(served: Served) -> None:
    with Client(served.url) as client:
        for where, call in CALLS:
            with pytest.raises(InvalidArgumentError, match=r"'\\ud800'.*lone surrogate"):
                call(client)
                pytest.fail(f"sent a surrogate in the {where}")
        with pytest.raises(InvalidArgumentError, match=r"'\\ud800'.*lone surrogate"):
            list(client.stream_events(SURROGATE))
        assert client.list_runs().runs == []  # nothing reached the server


async def test_the_async_client_refuses_it_too(served: Served) -> None:
    async with AsyncClient(served.url) as client:
        with pytest.raises(InvalidArgumentError, match="lone surrogate"):
            await client.get_record(SURROGATE)
        with pytest.raises(InvalidArgumentError, match="lone surrogate"):
            await client.start("greet", {"name": SURROGATE})
        with pytest.raises(InvalidArgumentError, match="lone surrogate"):
            async for _ in client.stream_events(SURROGATE):
                pass
        with pytest.raises(InvalidArgumentError, match=HEADER):
            await client.start("greet", {"name": "a"}, idempotency_key="clé")


def test_a_token_or_key_no_header_can_carry_is_refused(served: Served) -> None:
    with pytest.raises(InvalidArgumentError, match=HEADER):
        Client(served.url, token="tth_é")
    with Client(served.url) as client:
        with pytest.raises(InvalidArgumentError, match=HEADER):
            client.start("greet", {"name": "a"}, idempotency_key="clé")
        with pytest.raises(InvalidArgumentError, match=HEADER):  # not "cannot reach"
            client.start("greet", {"name": "a"}, idempotency_key="a\nb")
        assert client.list_runs().runs == []
