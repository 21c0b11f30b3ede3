"""A run's forms whose payload field says JSON (signal, complete a token, send an
event): text that is not JSON was sent on as a string, so a forgotten brace woke the
run with a value nobody meant. It is refused, said why and how to fix it, in the
form it came from, with the text as it was typed."""

from __future__ import annotations

import html
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tether import Client, RunStatus
from tether.server._dash_actions import BadPayload, parse_payload

from . import test_dashboard
from ._serve import Served
from .test_dashboard import done, shot, text_of, wait_until

browser = test_dashboard.browser  # the fixture: a headless Chromium


class _Form(HTMLParser):
    """The action and fields of the page's first form of class `kind`."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.action, self._in = kind, "", False
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        given = {k: v or "" for k, v in attrs}
        if tag == "form" and self.kind in given.get("class", "").split() and not self.action:
            self.action, self._in = given["action"], True
        elif tag == "input" and self._in and given.get("type") == "hidden":
            self.fields[given["name"]] = given["value"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in = False


def _form(page: str, kind: str) -> tuple[str, dict[str, str]]:
    parser = _Form(kind)
    parser.feed(page)
    assert parser.action, f"no form {kind}"
    return parser.action, dict(parser.fields)


@pytest.mark.parametrize(
    ("workflow", "kind"),
    [("waits", "act-signal"), ("tokened", "act-token"), ("hooked", "act-event")],
)
def test_a_payload_that_is_not_json_is_refused_in_its_form_as_typed(
    served: Served, workflow: str, kind: str
) -> None:
    typed = '{"approved": true, <by> "me"'  # a brace forgotten, and markup to escape
    with Client(served.url) as client, httpx.Client(base_url=served.url) as web:
        wid = client.start(workflow)
        done(client, wid, RunStatus.WAITING)
        action, fields = _form(web.get(f"/runs/{wid}").text, kind)
        refused = web.post(action, data={**fields, "payload": typed})
        assert refused.status_code == 422, refused.text[:300]
        assert "The payload is not valid JSON (Expecting property name enclosed in double " \
            "quotes at character 20)." in html.unescape(refused.text)  # fmt: skip
        assert 'text in double quotes such as "looks good"' in html.unescape(refused.text)
        assert f">{typed}</textarea>" in html.unescape(refused.text)  # nothing lost
        assert "<by>" not in refused.text  # escaped
        assert 'aria-invalid="true"' in refused.text
        assert client.get_record(wid).status is RunStatus.WAITING  # nothing was sent
        sent = web.post(action, data={**fields, "payload": '{"approved": true}'})
        assert sent.status_code == 303, sent.text[:300]
        assert done(client, wid).output == {"approved": True}


def test_json_text_and_an_empty_field_are_still_sent(served: Served) -> None:
    with Client(served.url) as client, httpx.Client(base_url=served.url) as web:
        first, second = client.start("waits"), client.start("waits")
        for wid, typed, meant in ((first, ' "yes" ', "yes"), (second, "  ", None)):
            done(client, wid, RunStatus.WAITING)
            action, fields = _form(web.get(f"/runs/{wid}").text, "act-signal")
            assert web.post(action, data={**fields, "payload": typed}).status_code == 303
            assert done(client, wid).output == meant


def test_a_refused_payload_whose_wait_ended_meanwhile_is_still_shown(served: Served) -> None:
    """The form is gone from the page (another reader answered the wait): the text
    typed is shown with the problem, not dropped."""
    with Client(served.url) as client, httpx.Client(base_url=served.url) as web:
        wid = client.start("waits")
        done(client, wid, RunStatus.WAITING)
        action, fields = _form(web.get(f"/runs/{wid}").text, "act-signal")
        client.signal(wid, "go", 1)
        done(client, wid)
        refused = web.post(action, data={**fields, "payload": "not json at all"})
        assert refused.status_code == 422
        assert "The payload as typed: not json at all" in refused.text


def test_a_refused_payload_in_a_browser_stays_in_its_field_to_be_fixed(
    served: Served, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    with Client(served.url) as client:
        wid = client.start("waits")
        done(client, wid, RunStatus.WAITING)
        browser.get(f"{served.url}/runs/{wid}")
        field = browser.find_element(By.CSS_SELECTOR, "#waits form.act-signal textarea")
        field.send_keys('{"approved": true')
        browser.find_element(By.CSS_SELECTOR, "#waits form.act-signal button").click()
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".payload-problem"),
                   "the refusal was not shown")  # fmt: skip
        assert "not valid JSON" in text_of(browser, ".payload-problem")
        shot(browser, tmp_path, "payload-refused")
        field = browser.find_element(By.CSS_SELECTOR, "#waits form.act-signal textarea")
        assert field.get_attribute("value") == '{"approved": true'
        assert browser.switch_to.active_element == field  # where the fix is typed
        field.send_keys("}")  # the caret at the end of the text
        browser.find_element(By.CSS_SELECTOR, "#waits form.act-signal button").click()
        wait_until(browser, lambda d: "done=signalled" in d.current_url, "no answer to the form")
        assert done(client, wid).output == {"approved": True}


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("[1,\n 2,,]", "The payload is not valid JSON (Expecting value at line 2, column 4)."),
        ("yes", "The payload is not valid JSON (Expecting value at character 1)."),
        ("1" * 5000, "more digits than can be read (at most 4300); send it as text in"),
    ],
)
def test_the_refusal_says_where_the_text_stops_being_json(typed: str, said: str) -> None:
    with pytest.raises(BadPayload) as refused:
        parse_payload(typed)
    assert said in str(refused.value)
    assert "set_int_max_str_digits" not in str(refused.value)  # Python's advice, not ours
