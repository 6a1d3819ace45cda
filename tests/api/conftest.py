"""Fixtures of the HTTP API tests: a migrated database per module and the API served against it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from api_server import running_api

from billing_core import database


@pytest.fixture(scope="module")
def api_db_url(pg_server, template_database) -> Iterator[str]:
    """A fresh clone of the migrated template for this module's tests and its server."""
    name = f"billing_api_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name, template=template_database)
    yield url
    database.dispose_engine(url)
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def api_url(api_db_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """The API (one worker) against this module's database; its base URL."""
    with running_api(api_db_url, log_name=f"api-{request.module.__name__}.log") as base:
        yield base
