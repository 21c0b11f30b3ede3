"""`tether tokens create --name`: a name is one line of printable text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tether import App
from tether.server import hash_token
from tether.store import ApiTokenRow


def invoke(url: str, *args: str) -> Result:
    from tether.cli import cli

    return CliRunner().invoke(cli, [*args, "--db", url], env={"TETHER_DATABASE_URL": None})


@pytest.mark.parametrize("name", ["ci\nbot", "ci\tbot", "ci\x1b[31mbot", "bot\x7f", "bot\x85"])
def test_a_name_with_a_control_character_is_refused_and_nothing_made(
    tmp_path: Path, name: str
) -> None:
    # a newline split the name over two rows of `tokens list`, as if two tokens
    url = f"sqlite:///{tmp_path}/t.db"
    made = invoke(url, "tokens", "create", "--scope", "read", "--name", name)
    assert made.exit_code == 2, made.output
    assert "--name" in made.output and "control character" in made.output, made.output
    assert "tth_" not in made.output
    fine = invoke(url, "tokens", "create", "--scope", "read", "--name", "ci bot ü")
    assert fine.exit_code == 0, fine.output
    listed = json.loads(invoke(url, "tokens", "list", "--json").output)
    assert [t["name"] for t in listed] == ["ci bot ü"]


def test_a_token_whose_name_has_a_newline_can_still_be_revoked(tmp_path: Path) -> None:
    """Only new names are held to it: the API still stores such a name, and the token
    must not be left beyond the reach of `revoke`."""
    url = f"sqlite:///{tmp_path}/t.db"
    with App(url) as app:
        # as a release before create_token refused such a name stored it
        old = ApiTokenRow("tok_old", "old\nname", "read", hash_token("tth_x"),
                          app.clock.now(), None, None)  # fmt: skip
        app.run_sync(app.store.create_api_token(old))
    revoked = invoke(url, "tokens", "revoke", "old\nname")
    assert revoked.exit_code == 0 and "revoked 1 token(s)" in revoked.output, revoked.output
