"""Database URLs given to `App(url)`: a URL no backend can use is refused when the App is
made, with an `InvalidArgumentError` naming the bad part and showing a good one; a
database that cannot be reached is a `StoreError` at first use. Nothing else escapes.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import App, FakeClock, InvalidArgumentError, StoreError, TetherError

from ._support import FAST, assert_clear

BAD_URLS = [
    ("garbage", "unsupported database URL"),
    ("foo://x/y", "unsupported database URL"),
    ("http://localhost/db", "unsupported database URL"),
    ("sqlite://host/x.db", "three slashes"),
    ("sqlite:///x.db?durability=x", "durability"),
    ("sqlite:///x.db?busy_timeout=abc", "busy_timeout"),
    ("sqlite:///x.db?busy_timeout=-1", "busy_timeout"),
    ("sqlite:///x.db?busy_timeout=nan", "busy_timeout"),
    ("sqlite:///x.db?busy_timeout=inf", "busy_timeout"),
    ("sqlite:///x.db?bogus=1", "bogus"),
    ("sqlite:///a\x00b.db", "NUL"),
    ("sqlite:///\udcff.db", "surrogate"),
    ("postgresql://u@[::1:5432/x", "IPv6"),
    ("postgresql://u@::1:5432/x", "port"),
    ("postgresql://127.0.0.1:99999/test", "port"),
    ("postgresql://127.0.0.1:abc/test", "port"),
    ("postgresql://127.0.0.1:-1/test", "port"),
    ("postgresql://127.0.0.1:5432/test?pool_size=-1", "pool_size"),
    ("postgresql://127.0.0.1:5432/test?pool_size=0", "pool_size"),
    ("postgresql://127.0.0.1:5432/test?pool_size=abc", "pool_size"),
    ("postgresql://127.0.0.1:5432/test?pool_size=2.5", "pool_size"),
    ("postgresql://127.0.0.1:5432/test?statement_timeout=abc", "statement_timeout"),
    ("postgresql://127.0.0.1:5432/test?statement_timeout=-1", "statement_timeout"),
    ("postgresql://127.0.0.1:5432/test?statement_timeout=nan", "statement_timeout"),
    ("postgresql://127.0.0.1:5432/test?statement_timeout=inf", "statement_timeout"),
    ("postgresql://127.0.0.1:5432/test?durability=sometimes", "durability"),
    ("postgresql://127.0.0.1:5432/test?bogus=1", "bogus"),
    ("postgres://127.0.0.1:5432/test?schema=a-b", "schema"),
]


@pytest.mark.parametrize(("url", "named"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_a_bad_url_is_refused_when_the_app_is_made(url: str, named: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        App(url, clock=FakeClock())
    # the schema message (in the PostgreSQL adapter) names the rule, not an example
    assert_clear(caught.value, named, hint="schema=" not in url)


def test_a_password_is_not_repeated_in_the_error() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        App("postgresql://u:s3cret@127.0.0.1:99999/test")
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)


@pytest.mark.parametrize("url", [123, 1.5, b"sqlite:///x.db", ["sqlite:///x.db"], object()])
def test_a_url_that_is_not_a_str_is_refused(url: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        App(url)
    assert_clear(caught.value, "database URL must be a str")


def test_a_bad_url_in_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_DATABASE_URL", "postgresql://u@[::1:5432/x")
    with pytest.raises(InvalidArgumentError) as caught:
        App()
    assert_clear(caught.value, "$TETHER_DATABASE_URL", "IPv6")


@pytest.mark.parametrize("durability", ["x", "FULLY", 3, "full;"])
def test_a_bad_durability_argument_is_refused(sqlite_url: str, durability: Any) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        App(sqlite_url, durability=durability)
    assert_clear(caught.value, "durability")


# -- properties: anything URL-shaped is refused clearly or accepted sanely -------------------

url_chars = st.one_of(
    st.sampled_from([*"/:@[]?=&%#.-_ ", "\x00", "\udcff", "é"]),
    st.characters(codec="ascii"),
)
schemes = st.sampled_from(
    ["sqlite://", "sqlite:///", "sqlite:////", "postgresql://", "postgres://", "", "http://", "x:"]
)
urls = st.tuples(schemes, st.text(url_chars, max_size=30)).map("".join)


def _make(url: str) -> App | None:
    """App(url), or None if it was refused as tether refuses; anything else fails the test."""
    try:
        return App(url, clock=FakeClock())
    except TetherError as exc:
        assert_clear(exc, hint=False)  # some adapter messages name the rule, not an example
        return None


@FAST
@given(url=urls)
def test_any_url_is_refused_by_tether_or_accepted(url: str) -> None:
    if url == "":
        return  # the default file
    app = _make(url)
    if app is not None:
        app.close()  # the store connects lazily: nothing was opened


option_values = st.one_of(
    st.text(st.characters(codec="ascii"), max_size=8),
    st.integers(min_value=-5, max_value=100).map(str),
    st.floats().map(str),
)


@FAST
@given(name=st.sampled_from(["durability", "busy_timeout"]), value=option_values)
def test_a_sqlite_option_is_refused_naming_it_or_accepted_sane(name: str, value: str) -> None:
    from urllib.parse import quote

    url = f"sqlite:///:memory:?{name}={quote(value)}"
    try:
        app = App(url, clock=FakeClock())
    except InvalidArgumentError as exc:
        assert_clear(exc, name)
        return
    config = app.store.config  # type: ignore[attr-defined]
    app.close()
    assert math.isfinite(config.busy_timeout) and config.busy_timeout >= 0
    assert config.durability.value in {"full", "normal"}


@FAST
@given(name=st.sampled_from(["pool_size", "statement_timeout"]), value=option_values)
def test_a_postgres_option_is_refused_naming_it_or_accepted_sane(name: str, value: str) -> None:
    from urllib.parse import quote

    url = f"postgresql://127.0.0.1:5432/test?{name}={quote(value)}"
    try:
        app = App(url, clock=FakeClock())
    except InvalidArgumentError as exc:
        assert_clear(exc, name)
        return
    config = app.store.config  # type: ignore[attr-defined]
    app.close()
    assert config.pool_size >= 1
    timeout = config.statement_timeout
    assert timeout is None or (math.isfinite(timeout) and 0 <= timeout <= 2_147_483)


# -- reachable only at first use: a StoreError saying what to check --------------------------


def test_a_sqlite_path_that_cannot_be_opened_is_a_store_error(tmp_path: Any) -> None:
    folder = tmp_path / "a-folder"  # a folder where the file should be
    folder.mkdir()
    app = App(f"sqlite:///{folder}", clock=FakeClock())
    try:
        with pytest.raises(StoreError) as caught:
            app.list_runs()
        assert str(folder) in str(caught.value)
    finally:
        app.close()


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Any) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    app = App(f"sqlite:///{junk}", clock=FakeClock())
    try:
        with pytest.raises(StoreError):
            app.list_runs()
    finally:
        app.close()


def test_a_postgres_server_that_does_not_answer_is_a_store_error() -> None:
    pytest.importorskip("psycopg")
    app = App("postgresql://127.0.0.1:1/test?connect_timeout=2", clock=FakeClock())
    try:
        with pytest.raises(StoreError) as caught:
            app.list_runs()
        assert_clear(caught.value, "127.0.0.1:1", hint=False)
        assert "check" in str(caught.value).lower()
    finally:
        app.close()
