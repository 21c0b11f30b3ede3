"""`tether serve --root-path`: behind a proxy that serves the server at a path and strips
it, the dashboard's links, redirects and cookies carry the path (without the option,
only an ASGI mount of one's own could give it one)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from ._serve import start, tether


def test_serve_behind_a_proxy_path_gives_addresses_under_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    served = start(tmp_path, db, "--root-path", "/tether/")
    try:
        # the proxy strips /tether: the server is asked at its own root
        home = httpx.get(served.url + "/", headers={"Accept": "text/html"})
        assert home.status_code == 303 and home.headers["location"] == "/tether/runs"
        page = httpx.get(served.url + "/runs", headers={"Accept": "text/html"}).text
        addresses = re.findall(r'(?:href|src|action)="([^"]+)"', page)
        assert addresses and all(a.startswith("/tether/") for a in addresses if a[0] == "/")
        assert "its links start with /tether" in served.log
    finally:
        served.stop()


def test_a_root_path_that_is_no_path_is_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 't.db'}"
    res = tether(tmp_path, db, "serve", "--root-path", "tether ui")
    assert res.returncode == 2
    assert "'tether ui' is no URL path" in res.stderr and "--root-path /tether" in res.stderr
