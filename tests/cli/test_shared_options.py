"""`app_option` and `window_options`: the `--app` and `--since`/`--until` options that
several commands declare, each as one helper."""

from __future__ import annotations

import click
from click.testing import CliRunner

from tether.cli._common import app_option, window_options


@click.command()
@app_option("The App.", required=True)
@window_options("From then.", "Until then.")
def _probe(app_ref: str, since: str | None, until: str | None) -> None:
    print(f"{app_ref}|{since}|{until}")


def test_the_options_reach_the_command_by_their_names() -> None:
    res = CliRunner().invoke(_probe, ["--app", "m:app", "--until", "1h", "--since", "2h"])
    assert res.exit_code == 0, res.output
    assert res.output == "m:app|2h|1h\n"


def test_a_required_app_is_refused_when_missing() -> None:
    res = CliRunner().invoke(_probe, ["--since", "2h"])
    assert res.exit_code == 2
    assert "Missing option '--app'" in res.output


def test_help_shows_the_metavars_and_since_before_until() -> None:
    shown = CliRunner().invoke(_probe, ["--help"], terminal_width=100).output
    assert "--app FILE.py:APP|MODULE:APP" in shown
    assert "The App." in shown
    lines = [line.split() for line in shown.splitlines()]
    assert ["--since", "WHEN", "From", "then."] in lines
    assert lines.index(["--since", "WHEN", "From", "then."]) + 1 == lines.index(
        ["--until", "WHEN", "Until", "then."]
    )


def test_an_optional_app_defaults_to_none() -> None:
    @click.command()
    @app_option("Optional.")
    def probe(app_ref: str | None) -> None:
        print(repr(app_ref))

    assert CliRunner().invoke(probe, []).output == "None\n"
