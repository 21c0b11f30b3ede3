"""Addresses a person types or a link gets slightly wrong: the dashboard answers a
browser with a page (its pages and how to reach them), the API keeps answering JSON."""

from __future__ import annotations

import httpx

from ._serve import Served

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_runs_with_a_trailing_slash_is_the_runs_list(served: Served) -> None:
    # /usage/, /queues/ and /agents/ led to their pages; /runs/ said "No such run: no
    # run id was given" (404), its filters lost
    got = httpx.get(f"{served.url}/runs/?status=failed", headers=HTML)
    assert got.status_code == 307 and got.headers["location"] == "/runs?status=failed"
    page = httpx.get(f"{served.url}/runs/", headers=HTML, follow_redirects=True)
    assert page.status_code == 200 and "<title>Runs · tether</title>" in page.text


def test_a_page_the_dashboard_has_not_is_a_page_for_a_browser(served: Served) -> None:
    # a browser showed {"error": {"code": "not_found", ...}} for a mistyped address
    page = httpx.get(f"{served.url}/runz/a&b", headers=HTML)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "No such page" in page.text and 'href="/runs"' in page.text
    assert "<code>/runz/a&amp;b</code>" in page.text  # the address, as text
    for path, headers in [("/runz", {}), ("/api/v1/nothing", HTML), ("/hooks/x/y", HTML)]:
        answer = httpx.get(served.url + path, headers=headers)  # a program: JSON, as before
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found", path
