"""The clients send the values `App` takes in-process: a pydantic model or a dataclass
as a run's input, initial state or a payload. The client handed them to the JSON
encoder as they were, which raised ``TypeError: Object of type Who is not JSON
serializable``; a value no JSON holds is refused before anything is sent, naming it."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel

from tether import Client, NotSerializableError, RunStatus

from ._serve import Served
from .test_dashboard import done


class Who(BaseModel):
    name: str


@dataclasses.dataclass
class Go:
    by: str
    at: tuple[int, int]


def test_models_and_dataclasses_are_sent_as_their_json(either_served: Served) -> None:
    with Client(either_served.url) as client:
        greeted = client.start("greet", Who(name="Ada"), initial_state=Go("me", (1, 2)))
        assert done(client, greeted).output == "hi Ada"
        assert client.get_record(greeted).state == {"by": "me", "at": [1, 2]}
        waiting = client.start("waits")
        done(client, waiting, RunStatus.WAITING)
        client.signal(waiting, "go", Go("ada", (3, 4)))
        assert done(client, waiting).output == {"by": "ada", "at": [3, 4]}


def test_a_value_json_cannot_hold_is_refused_before_it_is_sent(served: Served) -> None:
    with Client(served.url) as client:
        with pytest.raises(NotSerializableError, match=r"input cannot be stored as JSON.*\$\.who"):
            client.start("greet", {"who": object()})
        with pytest.raises(NotSerializableError, match=r"signal 'go' payload.*\$\[0\]"):
            client.signal("no-such-run", "go", [object()])
        assert client.list_runs().runs == []  # nothing reached the server
