"""The dashboard mounted below a path (``/tether``), as a reverse proxy serves it: the
ASGI ``root_path`` set, a real uvicorn server answering nothing outside the mount.
Its links, forms, assets, redirects, cookies and its script's event stream went to
``/``: the proxy's other site, or nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tether import Client, RunStatus
from tether.testing import eventually_sync

from . import test_dashboard
from ._serve import FLOWS, environment, free_port
from .test_dashboard import WAIT, done, shot, text_of, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium

PREFIX = "/tether"

# The App of `FLOWS`, mounted at PREFIX as a proxy mounts it (the path whole, the
# mount point in root_path, as Starlette's Mount and uvicorn --root-path give it).
# Outside the mount: 404, so that an address that left it fails.
MOUNTED = textwrap.dedent(
    """
    import sys

    import uvicorn

    from flows import app
    from tether.server import ServerConfig, create_app

    PREFIX = sys.argv[2]
    inner = create_app(app, ServerConfig(allow_unauthenticated=True))

    async def mounted(scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            if path != PREFIX and not path.startswith(PREFIX + "/"):
                body = b"outside the mount: " + path.encode()
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            scope = {**scope, "root_path": PREFIX}
        await inner(scope, receive, send)

    uvicorn.run(mounted, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    """
)


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[str]:
    """The mounted dashboard's URL (``http://127.0.0.1:PORT/tether``)."""
    db = f"sqlite:///{tmp_path}/t.db"
    (tmp_path / "flows.py").write_text(FLOWS)
    (tmp_path / "mounted.py").write_text(MOUNTED)
    port = free_port()
    with (tmp_path / "serve.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "mounted.py", str(port), PREFIX],
            cwd=tmp_path,
            env=environment(tmp_path, db),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}{PREFIX}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(f"{url}/api/v1/openapi.json").status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually_sync(up, timeout=WAIT, interval=0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class _Addresses(HTMLParser):
    """Every address a page gives: links, assets and form actions."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src", "action") and value is not None:
                self.found.append((tag, value))


def _addresses(html: str) -> list[tuple[str, str]]:
    parser = _Addresses()
    parser.feed(html)
    return parser.found


def _parked(url: str) -> str:
    with Client(url) as client:
        wid = client.start("waits", workflow_id="batch/7 ünï")  # a '/': a run's ?id= form
        done(client, wid, RunStatus.WAITING)
        return wid


def _pages(wid: str) -> list[str]:
    run = f"/run?id={wid}"
    return ["/runs", run, "/queues", "/usage", "/agents", "/agents?all=1", "/no-such-page"]


def test_every_address_of_every_page_stays_under_the_mount_point(mounted: str) -> None:
    wid = _parked(mounted)
    with Client(mounted) as client:  # a value too long to show whole: a link to it
        ended = client.start("waits")
        done(client, ended, RunStatus.WAITING)
        client.signal(ended, "go", "x" * 20_000)
        done(client, ended)
    with httpx.Client(headers={"Accept": "text/html"}) as web:
        assert "/run/value?" in web.get(f"{mounted}/runs/{ended}").text
        for page in [*_pages(wid), f"/runs/{ended}"]:
            answer = web.get(mounted + page)
            assert answer.status_code in (200, 404), (page, answer.text[:300])
            assert "outside the mount" not in answer.text, page
            found = _addresses(answer.text)
            assert found, page
            for tag, address in found:
                if address.startswith(("#", "data:")):
                    continue
                whole = urljoin(answer.url.__str__(), address)
                assert urlsplit(whole).path.startswith(PREFIX + "/"), (page, tag, address)
                if tag in ("a", "link", "script"):  # each leads somewhere inside the mount
                    reached = web.get(whole)
                    assert reached.status_code < 400, (page, address, reached.text[:200])


def test_redirects_and_cookies_stay_under_the_mount_point(mounted: str) -> None:
    wid = _parked(mounted)
    with httpx.Client() as web:
        home = web.get(f"{mounted}/?status=waiting")
        assert home.status_code == 303
        assert home.headers["location"] == f"{PREFIX}/runs?status=waiting"
        assert web.get(f"{mounted}/runs/").headers["location"] == f"{PREFIX}/runs"
        found = web.get(f"{mounted}/runs", params={"q": wid})
        assert found.headers["location"].startswith(f"{PREFIX}/runs/batch%2F7"), found.headers
        page = web.get(mounted + found.headers["location"].removeprefix(PREFIX))
        cookie = page.headers["set-cookie"]
        assert f"Path={PREFIX};" in cookie or cookie.endswith(f"Path={PREFIX}"), cookie
        csrf = web.cookies["tether_csrf"]
        sent = web.post(
            f"{mounted}/run/signal",
            params={"id": wid},
            data={"csrf": csrf, "name": "go", "payload": '"now"'},
        )
        assert sent.status_code == 303, sent.text[:300]
        assert sent.headers["location"].startswith(f"{PREFIX}/runs/batch%2F7")
        login = web.post(f"{mounted}/-/login", data={"token": ""})
        assert f'action="{PREFIX}/-/login"' in login.text
    with Client(mounted) as client:
        assert done(client, wid).output == "now"


def _checked_addresses(driver: Any, base: str) -> None:
    """Every link, asset and form of the page, resolved by the browser, under `base`;
    and its stylesheet and script loaded."""
    found = driver.execute_script(
        "return Array.from(document.querySelectorAll('a[href], link[href], script[src], "
        "form[action]')).map(e => e.href || e.src || e.action)"
        ".filter(u => !u.startsWith('data:') && !u.includes('#'))"
    )
    assert found
    outside = [u for u in found if not u.startswith(base + "/")]
    assert not outside, outside
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/-/static/')).map(e => [e.name, e.responseStatus])"
    )
    assert sorted(loaded) == [
        [f"{base}/-/static/dash.css", 200],
        [f"{base}/-/static/dash.js", 200],
    ]


def test_the_mounted_dashboard_in_a_browser_follows_a_run_and_acts_on_it(
    mounted: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    wid = _parked(mounted)
    browser.get(f"{mounted}/runs")
    _checked_addresses(browser, mounted)
    browser.find_element(By.CSS_SELECTOR, "#runs-body a").click()
    wait_until(browser, lambda d: text_of(d, "h1") == wid, "the run's link did not lead to it")
    _checked_addresses(browser, mounted)
    shot(browser, tmp_path, "mounted-run")
    form = browser.find_element(By.CSS_SELECTOR, "#waits form.act-signal")
    form.find_element(By.NAME, "payload").send_keys('{"from": "the mount"}')
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_until(browser, lambda d: "done=signalled" in d.current_url, "no answer to the form")
    assert browser.current_url.startswith(f"{mounted}/runs/batch%2F7")
    # the run's end arrives over the page's event stream (/tether/run/events)
    wait_until(browser, lambda d: text_of(d, "#run-status") == "completed", "not followed live")
    with Client(mounted) as client:
        assert done(client, wid).output == {"from": "the mount"}
    for page in ("/queues", "/usage", "/agents"):
        browser.get(mounted + page)
        _checked_addresses(browser, mounted)
    shot(browser, tmp_path, "mounted-agents")
