"""Fixtures of the trace_service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.trace_service.http.test_ingest import Ingest, make_ingest


@pytest.fixture
def ingest(database_url: str) -> Iterator[Ingest]:
    """The app with an ingest key and a reports:read key, on ``database_url`` (migrated)."""
    made = make_ingest(database_url)
    yield made
    made.app.extensions["trace_writer"].close(2)
    made.app.extensions["trace_engine"].dispose()
