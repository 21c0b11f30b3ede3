"""`tether tokens create` whose stdout cannot take the token: a token never shown is
revoked at once, and the command says so."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ._helpers import TETHER, tether


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_token_that_could_not_be_printed_is_revoked_and_said(tmp_path: Path) -> None:
    # `> /dev/full` (a full disk): a traceback (OSError: No space left on device), exit 1,
    # and a live token left behind whose secret nobody ever saw
    url = f"sqlite:///{tmp_path}/t.db"
    env = {k: v for k, v in os.environ.items() if k != "TETHER_DATABASE_URL"}
    with open("/dev/full", "w") as full:
        made = subprocess.run(
            [TETHER, "--db", url, "tokens", "create", "--scope", "admin", "--name", "lost"],
            stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120,
        )  # fmt: skip
    assert made.returncode == 2, made.stderr
    assert "Traceback" not in made.stderr
    assert "could not be written to stdout" in made.stderr and "revoked" in made.stderr
    listed = tether(tmp_path, "tokens", "list", "--json", db=url)
    assert listed.returncode == 0, listed.stderr
    (token,) = json.loads(listed.stdout)
    assert token["name"] == "lost" and token["revokedAt"] is not None
    assert token["id"] in made.stderr
