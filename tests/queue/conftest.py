"""Fixtures of the queue's tests: a redis-server of the test's own."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import REDIS_SERVER, RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which(REDIS_SERVER) is None:
        pytest.fail(f"{REDIS_SERVER} not found: apt-get install -y redis-server (.ci/run does this)")
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory).start()
    yield server
    server.stop()
