"""The endpoint's append to the stream (``TraceStream`` over its ``Appender``) against a real
redis-server of the test's own: the command bytes are redis-py's, a restarted Redis or a forked
process costs no request a 503, and a failed command's connection is never read again."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from governance.errors import IngestError
from tests.support.redis_server import RedisServer
from trace_service.http.stream import Appender, TraceStream, pack_command

STREAM = "test:append"


# redis-py splits a first argument at spaces (a command name like "CLIENT ID"): ours are names.
@given(st.sampled_from([b"EVALSHA", b"XADD", b"PING"]),
       st.lists(st.binary(max_size=300), max_size=8))
def test_pack_command_is_the_bytes_redis_py_sends(name: bytes, args: list[bytes]) -> None:
    packer: Any = redis.connection.Connection()  # type: ignore[no-untyped-call]  # untyped in redis-py
    expected = b"".join(packer.pack_command(name, *args))
    assert pack_command(name, *args) == expected


@pytest.fixture
def streams() -> Iterator[list[TraceStream]]:
    """Streams the test opens, closed after it."""
    opened: list[TraceStream] = []
    yield opened
    for stream in opened:
        stream.close()


def open_stream(streams: list[TraceStream], server: RedisServer, limit: int = 100,
                timeout: float = 2.0) -> TraceStream:
    stream = TraceStream(server.url, STREAM, limit, timeout=timeout)
    streams.append(stream)
    return stream


def connections_made(watcher: redis.Redis) -> int:
    """Connections Redis has accepted so far (``watcher``'s own made before)."""
    stats: Any = watcher.info("stats")  # redis-py types replies "Awaitable | Any"
    return int(stats["total_connections_received"])


def entries(stream: TraceStream) -> list[bytes]:
    return [fields[b"t"] for _id, fields in stream.client.xrange(STREAM)]


def test_a_restarted_redis_costs_no_request_a_503(redis_server: RedisServer,
                                                  streams: list[TraceStream]) -> None:
    stream = open_stream(streams, redis_server)
    stream.append([b"before"])
    redis_server.kill()  # the idle connection is now dead, and the script cache is gone
    redis_server.start()
    stream.append([b"after"])  # retried once on a new connection, the script loaded again
    assert entries(stream) == [b"before", b"after"]


def test_redis_down_is_a_503_naming_the_queue(redis_server: RedisServer,
                                              streams: list[TraceStream]) -> None:
    stream = open_stream(streams, redis_server)
    redis_server.kill()
    with pytest.raises(IngestError) as raised:
        stream.append([b"lost"])
    assert raised.value.status == 503 and raised.value.retry_after
    assert "queue is unavailable (ConnectionError)" in str(raised.value)


def test_connections_dropped_in_an_outage_do_not_use_up_the_urls_max_connections(
        redis_server: RedisServer, streams: list[TraceStream]) -> None:
    # The pool counts what it makes until it is released; the Appender makes its own.
    stream = TraceStream(redis_server.url + "?max_connections=2", STREAM, 100)
    streams.append(stream)
    stream.append([b"before"])
    redis_server.kill()
    for _ in range(5):
        with pytest.raises(IngestError, match="queue"):
            stream.append([b"lost"])
    redis_server.start()
    stream.append([b"after"])
    assert entries(stream) == [b"before", b"after"]


def commands(buffer: bytearray) -> Iterator[list[bytes]]:
    """The whole RESP commands at the head of ``buffer``, taken off it."""
    while buffer.startswith(b"*") and b"\r\n" in buffer:
        head, rest = bytes(buffer).split(b"\r\n", 1)
        args: list[bytes] = []
        for _ in range(int(head[1:])):
            if b"\r\n" not in rest:
                return
            size, rest = rest.split(b"\r\n", 1)
            if len(rest) < int(size[1:]) + 2:
                return
            args.append(rest[:int(size[1:])])
            rest = rest[int(size[1:]) + 2:]
        del buffer[:len(buffer) - len(rest)]
        yield args


def test_a_redis_still_loading_its_data_is_a_503_that_stored_nothing() -> None:
    # A restarted Redis answers -LOADING until its append-only file is read (seconds for a big
    # one), and redis-py raises that as a ConnectionError. Redis ran nothing: no "maybe stored",
    # and no retry on a new connection. A stand-in server: a real one loads too fast to catch.
    appends: list[int] = []
    done = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.1)

        def serve() -> None:
            while not done.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    answer(conn)

        def answer(conn: socket.socket) -> None:
            buffer = bytearray()
            while data := conn.recv(65536):
                buffer += data
                for args in commands(buffer):
                    if args[0] != b"EVALSHA":
                        conn.sendall(b"+OK\r\n")  # the connection's handshake
                        continue
                    appends.append(1)
                    conn.sendall(b":1\r\n" if len(appends) == 1 else
                                 b"-LOADING Redis is loading the dataset in memory\r\n")

        serving = threading.Thread(target=serve, daemon=True)
        serving.start()
        stream = TraceStream(f"redis://127.0.0.1:{server.getsockname()[1]}/0", STREAM, 100)
        try:
            stream.append([b"first"])  # answered: its connection is kept and reused next
            with pytest.raises(IngestError) as raised:
                stream.append([b"second"])
        finally:
            stream.close()  # the stand-in's reading ends
            done.set()
            serving.join(10)
    assert not serving.is_alive()
    assert "unavailable (BusyLoadingError): nothing was stored" in str(raised.value)
    assert len(appends) == 2  # not sent again on a new connection


def test_a_timed_out_command_is_not_retried_and_its_late_reply_never_read(
        redis_server: RedisServer, streams: list[TraceStream]) -> None:
    stream = open_stream(streams, redis_server, limit=2, timeout=0.3)
    stream.append([b"one"])
    watcher = redis_server.client()
    made = connections_made(watcher)
    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGSTOP)  # Redis stops answering, keeps its sockets
    try:
        with pytest.raises(IngestError) as raised:
            stream.append([b"two"])  # Redis runs it once it wakes; its reply comes too late
        # The client is told the truth: it may be stored, and a retry needs the same event ids.
        assert "did not answer (TimeoutError)" in str(raised.value)
        assert "may have been stored" in str(raised.value) and "event_id" in str(raised.value)
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    # Not retried: no connection was made for a second attempt.
    assert connections_made(watcher) == made
    # The stream holds two of its limit of two now: this append must be refused. The timed-out
    # command's ":1" reply sat unread on the old connection; reading it would answer 202.
    with pytest.raises(IngestError) as full:
        stream.append([b"three"])
    assert "queue is full" in str(full.value)
    assert connections_made(watcher) == made + 1  # the old one is gone
    assert entries(stream) == [b"one", b"two"]


def test_a_forked_child_appends_on_its_own_connection(redis_server: RedisServer) -> None:
    appender = Appender(redis.Redis.from_url(redis_server.url).connection_pool)
    client_id = pack_command(b"CLIENT", b"ID")  # which connection Redis sees the command on
    parents = appender.call(client_id).value
    pid = os.fork()
    if pid == 0:  # the child: sharing the parent's socket would mix their replies up
        code = 1
        try:
            code = 0 if appender.call(client_id).value != parents else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # 3: the child used the parent's connection
    assert appender.call(client_id).value == parents  # the parent keeps its own
    appender.close()
