"""Hostile input against the ingest endpoint under a real gunicorn, over raw sockets.

Promise: every hostile body gets a clear 4xx (never a 500), nothing of it is stored, and the
server stays healthy, on the in-process path (sync workers) and on the durable path (gevent
workers, as gunicorn.conf.py runs it). Slow clients (slow-loris: headers or a body trickled, then
a stall) hold a sync worker until gunicorn's ``timeout`` and no longer; production runs behind a
buffering proxy (nginx) for that reason, as gunicorn's own deployment guide says. A gevent worker
serves others meanwhile, and drops a slow body at ``TRACE_INGEST_BODY_SECONDS``.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from tests.reliability.conftest import Behind, wait_for
from tests.support.gunicorn import free_port, start_gunicorn, stop_gunicorn, wait_healthy
from tests.support.redis_server import RedisServer
from trace_service.http.keys import KeyStore

pytestmark = pytest.mark.timeout(180)
STREAM = "hostile:traces"  # the durable path's stream, named here so that its length is read there
WORKER_TIMEOUT = 5  # gunicorn -t for this test: how long a stuck worker may hold a request


class Server:
    def __init__(self, port: int, key: str, stored: Callable[[], int], durable: bool) -> None:
        self.port, self.key, self.stored, self.durable = port, key, stored, durable

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request("POST", "/api/telemetry/traces", body=body, headers={
                "Authorization": f"Bearer {self.key}", "Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            payload = response.read()
            return response.status, json.loads(payload) if payload else {}
        finally:
            conn.close()

    def healthy(self) -> bool:
        return wait_healthy(self.port, 2)


@pytest.fixture
def server(behind: Behind, request: pytest.FixtureRequest) -> Iterator[Server]:
    """The service on its in-process path (sync workers), or with ``indirect`` "durable" on the
    durable path (a Redis stream of the test's own; gevent workers, as gunicorn.conf.py picks)."""
    _, key = KeyStore(behind.engine).create("hostile", ["ingest"])
    port = free_port()
    env = {"TRACE_INGEST_RATE": "1000000/minute"}
    stored: Callable[[], int] = behind.count
    durable = getattr(request, "param", "in-process") == "durable"
    if durable:
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        env.update(TRACE_QUEUE_URL=redis_server.url, TRACE_QUEUE_STREAM=STREAM,
                   TRACE_INGEST_BODY_SECONDS=str(WORKER_TIMEOUT))
        client = redis_server.client()
        stored = lambda: int(client.xlen(STREAM))  # noqa: E731
    process = start_gunicorn(behind.url, port, env=env, args=("-w", "2", "-t", str(WORKER_TIMEOUT)))
    yield Server(port, key, stored, durable)
    stop_gunicorn(process)


HOSTILE: list[tuple[str, bytes, dict[str, str], int]] = [
    ("oversized body", b'{"event_key":"a","metadata":{"x":"' + b"a" * (2 * 2**20) + b'"}}', {}, 413),
    ("gzip bomb", gzip.compress(b'{"event_key":"a","metadata":{"x":"' + b"0" * (40 * 2**20) + b'"}}'),
     {"Content-Encoding": "gzip"}, 413),
    ("deep nesting", b'{"event_key":"a","metadata":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001, {}, 400),
    ("deep list nesting", b"[" * 200_000 + b"]" * 200_000, {}, 400),
    ("invalid UTF-8", b'{"event_key":"auth.\xff\xfe"}', {}, 400),
    ("raw NUL byte", b'{"event_key":"a\x00b"}', {}, 400),
    ("huge exponent", b'{"event_key":"a","metadata":{"n":1e999999}}', {}, 400),
    ("huge integer", b'{"event_key":"a","metadata":{"n":' + b"9" * 100_000 + b"}}", {}, 400),
    ("NaN", b'{"event_key":"a","metadata":{"n":NaN}}', {}, 400),
    ("duplicate keys", b'{"event_key":"a","event_key":"b"}', {}, 400),
    ("not JSON at all", b"\x00\x01\x02\x03" * 100, {}, 400),
    ("wrong content type", b"<xml/>", {"Content-Type": "application/xml"}, 415),
    ("a batch too large", json.dumps([{"event_key": "a"}] * 5000).encode(), {}, 413),
]


@pytest.mark.parametrize(("name", "body", "headers", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
@pytest.mark.parametrize("server", ["in-process", "durable"], indirect=True)
def test_hostile_bodies_get_a_clear_4xx(server: Server, name: str, body: bytes,
                                        headers: dict[str, str], status: int) -> None:
    got, answer = server.post(body, headers)
    assert got == status, (name, got, answer)
    assert answer.get("error"), answer  # a message that says what is wrong
    assert server.healthy()
    assert server.stored() == 0


def test_escaped_nul_and_control_characters_are_refused_or_stored_exactly(server: Server,
                                                                          behind: Behind) -> None:
    status, answer = server.post(json.dumps({"event_key": "auth.nul\u0000key"}).encode())
    assert status == 422, answer  # an event key is a dotted name: the item names the problem
    assert "event_key" in json.dumps(answer)
    body = {"event_key": "auth.fine", "metadata": {"v": "a\u0000b\u001f"}}
    status, answer = server.post(json.dumps(body).encode())
    assert status == 202, answer
    assert wait_for(lambda: behind.count() == 1, 10)
    with behind.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT metadata FROM telemetry_traces")).scalar_one()
    assert json.loads(stored)["v"] == "a\u0000b\u001f"  # kept exactly, as JSON escapes
    assert server.healthy()


def _slow_client(server: Server, stop: threading.Event, closed: list[float], answers: list[bytes]) -> None:
    """With a valid key (a keyless request is refused before its body is read), send headers
    promising a body, trickle part of it, then stall until the server hangs up."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WORKER_TIMEOUT * 4)
    started = time.monotonic()
    try:
        sock.sendall(b"POST /api/telemetry/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + server.key.encode() + b"\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(3):
            sock.sendall(b"{")
            if stop.wait(0.3):
                return
        answer = b""
        while chunk := sock.recv(1024):  # stall; b"" (or raises) when the server drops us
            answer += chunk
        answers.append(answer)
    except OSError:
        pass
    finally:
        closed.append(time.monotonic() - started)
        sock.close()


@pytest.mark.parametrize("server", ["in-process", "durable"], indirect=True)
@pytest.mark.parametrize("clients", [1, 4])
def test_slow_clients_hold_a_worker_only_until_the_timeout(server: Server, clients: int) -> None:
    assert server.post(json.dumps({"event_key": "before.slowloris"}).encode())[0] == 202
    stop, closed, answers = threading.Event(), [], []  # type: ignore[var-annotated]
    threads = [threading.Thread(target=_slow_client, args=(server, stop, closed, answers))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    threading.Event().wait(1.0)
    served_meanwhile = server.healthy()
    try:
        # gunicorn kills a worker stuck past its timeout and starts a fresh one.
        assert wait_for(lambda: len(closed) == clients, WORKER_TIMEOUT * 3, tick=0.2), closed
        assert wait_healthy(server.port, WORKER_TIMEOUT * 2)
        status, _ = server.post(json.dumps({"event_key": "after.slowloris"}).encode())
        assert status == 202
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    print(f"\nslow-loris x{clients}: other requests served meanwhile: {served_meanwhile}; "
          f"slow connections dropped after {max(closed):.1f} s (worker timeout {WORKER_TIMEOUT} s)")
    if clients == 1 or server.durable:
        assert served_meanwhile  # one stuck worker of two: the other serves; gevent: any number
    assert max(closed) <= WORKER_TIMEOUT * 3
    if server.durable:  # a gevent worker answers the slow body, where a sync worker is killed
        assert len(answers) == clients
        assert all(answer.startswith(b"HTTP/1.1 408 ") and b"TRACE_INGEST_BODY_SECONDS" in answer
                   for answer in answers), answers


@pytest.mark.parametrize("server", ["durable"], indirect=True)
def test_a_late_chunked_body_gets_408_and_what_follows_is_never_read_as_a_request(
        server: Server) -> None:
    """gevent workers: after the deadline, the rest of the body (here a request smuggled into a
    chunk) must not be parsed as the connection's next request."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WORKER_TIMEOUT * 4)
    try:
        sock.sendall(b"POST /api/telemetry/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + server.key.encode() + b"\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n40\r\n{")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".ljust(63, b"x")
        with contextlib.suppress(OSError):  # the server may have closed already
            sock.sendall(smuggled + b"\r\n0\r\n\r\n")
        rest = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(4096):
                rest += chunk
    finally:
        sock.close()
    assert b"HTTP/1.1 200" not in answer + rest, rest  # /healthz was never served on it
    assert server.healthy() and server.stored() == 0
