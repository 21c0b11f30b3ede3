"""A url the orchestrator could never send to is refused when the remote workflow is
registered, saying why and without the password in it; a scheme in capitals is a
URL like any other."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import tether
from tether.errors import InvalidArgumentError
from tether.remote import TenantApp, handler

SECRET = "s"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        # it failed each run with a bare ExceptionGroup from the socket layer
        ("http://ada:hunter2@127.0.0.1:99999/", "a port is 1 to 65535"),
        # it failed each run with httpx's "InvalidURL: Invalid port: ':1'"
        ("http://ada:hunter2@[::1/", "is not a valid URL"),
        ("ftp://ada:hunter2@tenant/", "must be an http(s) URL"),
        ("http://ada:hunter2@/", "with a host"),
    ],
)
def test_a_url_that_cannot_be_sent_to_is_refused_without_its_password(
    tmp_path: Path, url: str, said: str
) -> None:
    app = tether.App(f"sqlite:///{tmp_path}/o.db", inline_wait=0)
    try:
        with pytest.raises(InvalidArgumentError) as refused:
            app.remote_workflow("w", url=url, secret=SECRET)
    finally:
        app.close()
    message = str(refused.value)
    assert said in message and "***@" in message
    assert "hunter2" not in message
    assert "tether.remote.handler" in message  # says what to give instead


def test_a_scheme_in_capitals_is_served(app: tether.App) -> None:
    tenant = TenantApp(secret=SECRET)

    @tenant.workflow(name="shout")
    async def shout(wf: tether.Workflow, text: str) -> str:
        return await wf.step("upper", lambda: text.upper())

    transport = httpx.ASGITransport(app=handler(tenant))
    flow = app.remote_workflow("shout", url="HTTPS://Tenant.example/", secret=SECRET,
                               transport=transport)  # fmt: skip
    done = app.run(flow, "grüße 😀", workflow_id="shout-1")
    assert done.value == "GRÜSSE 😀"
