"""A dashboard page the server fails to make (its PostgreSQL schema dropped under it):
a browser gets a page saying so and what to check, the API's clients their JSON error."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from tether import Client, RunStatus

from .._postgres import PostgresServer
from ._serve import Served
from .test_dashboard import done

HTML = {"Accept": "text/html,application/xhtml+xml"}


def test_a_page_whose_database_fails_says_so_as_a_page(
    pg_served: Served, postgres: PostgresServer
) -> None:
    # the browser was shown {"error": {"code": "store_unavailable", ...}} as raw JSON
    with Client(pg_served.url) as client:
        wid = client.start("counts", 1)
        done(client, wid, RunStatus.COMPLETED)
    postgres.drop_schema(parse_qs(urlsplit(pg_served.db).query)["schema"][0])
    for path in ("/runs", f"/runs/{wid}", "/usage"):
        page = httpx.get(pg_served.url + path, headers=HTML)
        assert page.status_code == 503, (path, page.text)
        assert page.headers["content-type"].startswith("text/html"), page.text
        assert "<h1>The database could not be read</h1>" in page.text, page.text
        assert "does not exist" in page.text  # the database's own words
        assert "is reachable and still holds tether&#39;s tables" in page.text
    api = httpx.get(f"{pg_served.url}/api/v1/runs", headers=HTML)
    assert api.status_code == 503
    assert api.json()["error"]["code"] == "store_unavailable"
