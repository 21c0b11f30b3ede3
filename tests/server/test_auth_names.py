"""A new API token's name holds no control character, whichever way it is made: the
CLI refused one, `create_token` (and so ``POST /api/v1/api-tokens``) stored it, and
its newline split a row of `tether tokens list` in two."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tether import App, FakeClock
from tether.errors import InvalidArgumentError
from tether.server import create_token, hash_token
from tether.store import ApiTokenRow

from ._serve import Served

CONTROLS = ["ci\nbot", "tab\there", "esc\x1b[31mred", "del\x7f", "c1\x85next"]


@pytest.mark.parametrize("name", CONTROLS)
async def test_create_token_refuses_a_name_with_a_control_character(
    sqlite_url: str, name: str
) -> None:
    app = App(sqlite_url, clock=FakeClock())
    try:
        with pytest.raises(InvalidArgumentError, match="contains a control character"):
            await create_token(app.store, app.clock, "read", name)
        assert await app.store.list_api_tokens() == []
        _, made = await create_token(app.store, app.clock, "read", "Ada's laptop ✓")
        assert [t.name for t in await app.store.list_api_tokens()] == [made.name]
    finally:
        await app.aclose()


async def test_create_token_says_what_a_name_that_is_no_text_is(sqlite_url: str) -> None:
    """Before, a name that is no string raised a bare AttributeError."""
    app = App(sqlite_url, clock=FakeClock())
    try:
        with pytest.raises(InvalidArgumentError, match="name must be a string"):
            await create_token(app.store, app.clock, "read", 7)  # type: ignore[arg-type]
    finally:
        await app.aclose()


def test_the_api_refuses_a_new_token_name_with_a_control_character(served: Served) -> None:
    url = f"{served.url}/api/v1/api-tokens"
    for name in CONTROLS:
        answer = httpx.post(url, json={"scope": "read", "name": name}, timeout=30)
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "invalid_argument"
        assert "control character" in error["message"] and "printable" in error["message"]
    assert httpx.get(url, timeout=30).json() == []  # nothing made, and still open


def test_a_token_an_older_release_named_with_a_newline_can_still_be_revoked(
    tmp_path: Path,
) -> None:
    """Only new names are held to it: a token stored before must stay in reach."""
    from tether.cli import cli

    url = f"sqlite:///{tmp_path}/t.db"
    with App(url, clock=FakeClock()) as app:
        old = ApiTokenRow("tok_old", "old\nname", "read", hash_token("tth_x"),
                          app.clock.now(), None, None)  # fmt: skip
        app.run_sync(app.store.create_api_token(old))
    args = ["tokens", "revoke", "old\nname", "--db", url]
    revoked = CliRunner().invoke(cli, args, env={"TETHER_DATABASE_URL": None})
    assert revoked.exit_code == 0 and "revoked 1 token(s)" in revoked.output, revoked.output
