"""End to end: the real app under a real gunicorn on 127.0.0.1, real HTTP, real MariaDB."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gunicorn import free_port, start_gunicorn
from trace_service import migrate
from trace_service.db import create_engine
from trace_service.http.keys import KeyStore
from trace_service.reader import read_traces

V4 = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


class Server:
    def __init__(self, url: str, port: int, key: str, process: subprocess.Popen[bytes]) -> None:
        self.url, self.port, self.key, self.process = url, port, key, process

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/telemetry/traces",
                                         data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture
def server(mariadb_url: str) -> Iterator[Server]:
    engine = create_engine(mariadb_url)
    migrate.upgrade(engine)
    _, key = KeyStore(engine).create("e2e", ["ingest"])
    engine.dispose()
    port = free_port()
    try:
        process = start_gunicorn(mariadb_url, port)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield Server(mariadb_url, port, key, process)
    if process.poll() is None:
        process.kill()
    process.wait(10)
    if process.stderr is not None:
        process.stderr.close()


def stored(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        return read_traces(engine)
    finally:
        engine.dispose()


def stop_gracefully(server: Server) -> None:
    """SIGTERM: workers exit, and each writer flushes at interpreter exit within its deadline."""
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(20)


def test_every_body_form_over_real_http(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.key}"}
    one = server.post(json.dumps({"event_key": "e2e.object", "metadata": {"password": "pw"}}).encode(),
                      {**auth, "Content-Type": "application/json", "X-Request-ID": V4})
    batch = server.post(json.dumps([{"event_key": "e2e.list.1"}, {"event_key": "e2e.list.2"}]).encode(),
                        {**auth, "Content-Type": "application/json"})
    form = server.post(b"event_key=e2e.form&metadata%5Buser%5D%5Bid%5D=5",
                       {**auth, "Content-Type": "application/x-www-form-urlencoded"})
    gz = server.post(gzip.compress(b'[{"event_key":"e2e.gzip"}]'),
                     {**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert [r[0] for r in (one, batch, form, gz)] == [202, 202, 202, 202]
    assert one[1]["X-Request-ID"] == V4 and one[2]["request_id"] == V4
    denied = server.post(b'{"event_key":"x"}', {"Content-Type": "application/json"})
    assert denied[0] == 401 and denied[1]["X-Request-ID"]
    stop_gracefully(server)
    rows = {row.event_key: row for row in stored(server.url)}
    assert set(rows) == {"e2e.object", "e2e.list.1", "e2e.list.2", "e2e.form", "e2e.gzip"}
    assert rows["e2e.object"].metadata["password"] == "[masked]"
    assert rows["e2e.object"].request_id == V4
    assert rows["e2e.form"].metadata == {"user": {"id": "5"}}


def test_malformed_and_oversized_bodies_get_clear_4xx_and_the_server_stays_up(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
    assert server.post(b"\xff\xfe{", auth)[0] == 400
    assert server.post(b"[" * 50_000, auth)[0] in (400, 413)
    assert server.post(b"x" * (2 * 2**20), auth)[0] == 413
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as response:
        assert response.status == 200
