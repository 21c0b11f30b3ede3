"""API tokens and scopes, and where `tether serve` agrees to listen."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tether import Client
from tether.errors import InvalidArgumentError
from tether.server import ApiError, check_bind, is_loopback

from ._serve import FLOWS, TETHER, Served, environment, start, tether


def _status(url: str, token: str | None, method: str = "GET", path: str = "/api/v1/runs") -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    body = {"type": "x"} if method == "POST" else None
    return httpx.request(method, url + path, headers=headers, json=body).status_code


def test_scopes_missing_and_wrong_tokens(secured: tuple[Served, dict[str, str]]) -> None:
    served, tokens = secured
    url = served.url
    assert _status(url, None) == 401
    assert _status(url, "tth_not-a-token") == 401
    assert _status(url, tokens["read"]) == 200
    assert _status(url, tokens["read"], "POST", "/api/v1/events") == 403
    assert _status(url, tokens["write"], "POST", "/api/v1/events") == 200
    assert _status(url, tokens["write"], "GET", "/api/v1/api-tokens") == 403
    assert _status(url, tokens["admin"], "GET", "/api/v1/api-tokens") == 200
    missing = httpx.get(url + "/api/v1/runs").json()["error"]
    assert missing["code"] == "unauthenticated"
    with Client(url, tokens["read"]) as reader, pytest.raises(ApiError) as err:
        reader.send_event("x")
    assert (err.value.status, err.value.code) == (403, "insufficient_scope")


def test_admin_creates_and_revokes_tokens_over_http(
    secured: tuple[Served, dict[str, str]],
) -> None:
    served, tokens = secured
    with Client(served.url, tokens["admin"]) as admin:
        made = admin.create_api_token("read", "ci")
        assert made.token.startswith("tth_") and made.info.scope == "read"
        assert _status(served.url, made.token) == 200
        (revoked,) = admin.revoke_api_token(made.info.id)
        assert revoked.revoked_at is not None
        assert _status(served.url, made.token) == 401
        names = {t.name for t in admin.list_api_tokens()}
        assert names == {"read", "write", "admin", "ci"}
        # the route takes an id: a name (here the caller's own) revokes nothing
        with pytest.raises(ApiError) as err:
            admin.revoke_api_token("admin")
        assert (err.value.status, err.value.code) == (404, "api_token_not_found")
        assert _status(served.url, tokens["admin"], "GET", "/api/v1/api-tokens") == 200


def test_the_first_token_closes_unauthenticated_access(served: Served) -> None:
    assert _status(served.url, None) == 200  # no token yet, and we are on this machine
    assert "no API tokens yet" in served.log
    with Client(served.url) as client:
        made = client.create_api_token("admin")
    assert _status(served.url, None) == 401
    assert _status(served.url, made.token) == 200


def test_revoking_every_token_does_not_open_the_server_again(served: Served) -> None:
    """Before, revoking the last token let requests without one in again, as admin:
    anyone on this machine could mint a new admin token."""
    with Client(served.url) as client:
        made = client.create_api_token("admin", "only")
    with Client(served.url, made.token) as admin:
        admin.revoke_api_token(made.info.id)
    assert _status(served.url, None) == 401
    assert _status(served.url, None, "POST", "/api/v1/events") == 401
    mint = httpx.post(f"{served.url}/api/v1/api-tokens", json={"scope": "admin"})
    assert mint.status_code == 401 and mint.json()["error"]["code"] == "unauthenticated"
    served.stop()  # and so after a restart, when the only token is a revoked one
    again = start(served.folder, served.db)
    try:
        assert _status(again.url, None) == 401
        assert "every API token is revoked" in again.log and "no API tokens yet" not in again.log
    finally:
        again.stop()


def test_tokens_cli_create_list_revoke(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/t.db"
    made = tether(tmp_path, db, "tokens", "create", "--scope", "write", "--name", "bot")
    assert made.returncode == 0 and made.stdout.strip().startswith("tth_")
    assert "shown this once" in made.stderr
    listed = tether(tmp_path, db, "tokens", "list")
    assert "bot" in listed.stdout and "write" in listed.stdout
    assert made.stdout.strip() not in listed.stdout  # the secret is never shown again
    assert tether(tmp_path, db, "tokens", "revoke", "bot").returncode == 0
    again = tether(tmp_path, db, "tokens", "revoke", "bot")
    assert again.returncode == 3 and "no live API token" in again.stderr
    bad = tether(tmp_path, db, "tokens", "create", "--scope", "root")
    assert bad.returncode == 2


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    s = start(tmp_path, f"sqlite:///{tmp_path}/t.db", "--host", "0.0.0.0", wait=False)
    assert s.proc.wait(timeout=60) == 2
    assert "refusing to listen on '0.0.0.0' with no API token" in s.log


def test_which_addresses_are_this_machine() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1")
    check_bind("0.0.0.0", tokens=1)
    with pytest.raises(InvalidArgumentError):
        check_bind("example.org", tokens=0)


def test_serve_without_an_app_serves_the_runs_in_the_database(tmp_path: Path) -> None:
    from tether import App, Workflow

    db = f"sqlite:///{tmp_path}/t.db"
    app = App(db)

    async def hello(wf: Workflow) -> str:
        return await wf.step("hi", lambda: "hello")

    app.run(hello, workflow_id="made-elsewhere")
    app.close()
    served = start(tmp_path, db, flows=None)
    try:
        runs = httpx.get(served.url + "/api/v1/runs").json()
        assert [r["workflow_id"] for r in runs["runs"]] == ["made-elsewhere"]
        assert "made-elsewhere" in httpx.get(served.url + "/runs").text  # the dashboard
        assert f"dashboard: {served.url}/" in served.log
    finally:
        served.stop()
    missing = tether(tmp_path, f"sqlite:///{tmp_path}/none.db", "serve", "--port", "0")
    assert missing.returncode == 4 and "none.db" in missing.stderr


def test_a_token_made_for_the_app_guards_the_server_of_that_app(tmp_path: Path) -> None:
    """`tether tokens create` without --db wrote to the default database, not the one
    of the App that `tether serve --app` serves: the server stayed open to this
    machine and refused the token. With --app the token goes where the server looks,
    and stderr names the database, as `run` and `worker` do."""
    db = f"sqlite:///{tmp_path}/flows.db"  # the App's own (FLOWS_DB), not the default
    (tmp_path / "flows.py").write_text(FLOWS)
    env = environment(tmp_path, db)
    made = subprocess.run(
        [TETHER, "tokens", "create", "--scope", "read", "--app", "flows.py:app"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert f"database: {db} (from the App in flows.py)" in made.stderr
    bare = subprocess.run(
        [TETHER, "tokens", "create", "--scope", "read"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "database: sqlite:///.tether/tether.db (from the default)" in bare.stderr
    served = start(tmp_path, db)
    try:
        assert _status(served.url, None) == 401
        assert _status(served.url, made.stdout.strip()) == 200
        assert _status(served.url, bare.stdout.strip()) == 401
    finally:
        served.stop()
