"""URLs of a form tether does not take still keep their password out of the error."""

from __future__ import annotations

import pytest

from tether import App
from tether.errors import InvalidArgumentError
from tether.store import open_store


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://app:s3cret@db.internal/prod",  # SQLAlchemy's spelling
        "mysql://app:s3cret@db.internal/prod",
        "sqlite://app:s3cret@db.internal/tether.db",  # two slashes: a host
    ],
)
def test_a_url_of_another_form_is_refused_without_its_password(url: str) -> None:
    with pytest.raises(InvalidArgumentError) as store_error:
        open_store(url)
    with pytest.raises(InvalidArgumentError) as app_error:
        App(url)
    for said in (str(store_error.value), str(app_error.value)):
        assert "s3cret" not in said
        assert "app:***@db.internal" in said
