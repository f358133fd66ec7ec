"""The producer side of the durable ingest path: appending a request's traces to a Redis stream.

With ``TRACE_QUEUE_URL`` set, ``POST /api/telemetry/traces`` answers ``202`` only after Redis
has taken every trace of the request: one round trip runs a script that checks the stream's
length against ``TRACE_QUEUE_MAX_LENGTH`` and appends all the entries, or none (Redis runs a
script whole, and its append-only file logs it whole). Nothing is ever trimmed: ``MAXLEN``
would drop unread entries silently, so a full stream refuses the request (503 with
``Retry-After``) and the client retries once the consumers have caught up. Consumers delete
the entries they acknowledge, so the length is the backlog.

What a ``202`` then promises depends on Redis's own settings, which :func:`durability` reads at
start: with ``appendonly yes`` and ``appendfsync everysec`` an accepted trace survives a crash
of Redis except for the last second before it; with ``appendfsync always`` not even that; with
no append-only file it lives in Redis's memory only. A failover to a replica loses what the
replica had not yet received.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.connection import ConnectionPool

from governance.errors import IngestError

# KEYS[1] the stream; ARGV[1] the length limit; ARGV[2..] the entries (field "t").
_APPEND = """
local limit = tonumber(ARGV[1])
if redis.call('XLEN', KEYS[1]) + #ARGV - 1 > limit then
    return -1
end
for i = 2, #ARGV do
    redis.call('XADD', KEYS[1], '*', 't', ARGV[i])
end
return #ARGV - 1
"""
_APPEND_SHA = hashlib.sha1(_APPEND.encode()).hexdigest().encode()
DEAD_SUFFIX = ":dead"
RETRY_SECONDS = 5.0  # what a refused client is told to wait: a consumer batch or a reconnect
_NOTHING = "nothing was stored; retry after the Retry-After delay"
# Redis may have run the append and its reply was lost: the client's retry stores the traces
# once only if each carries its own event_id (those the endpoint assigns are never answered).
_MAYBE = ("the traces may have been stored; retry after the Retry-After delay, each trace with "
          "an event_id of its own so that a retry cannot store it twice")


def dead_stream(stream: str) -> str:
    """The dead-letter stream of ``stream``, where consumers park what they cannot store."""
    return stream + DEAD_SUFFIX


@dataclass(frozen=True)
class Durability:
    """What Redis does with an acknowledged append, read from its configuration."""

    appendonly: bool
    appendfsync: str
    maxmemory_policy: str

    def promise(self) -> str:
        """What a ``202`` means with these settings, in one sentence (logged at start)."""
        if not self.appendonly:
            return ("a 202 means the trace is in Redis's memory only (appendonly no): a restart "
                    "of Redis loses every trace not yet written; set appendonly yes")
        loss = {"always": "loses nothing it accepted",
                "everysec": "loses up to the last second of what it accepted",
                "no": "loses what the OS had not yet written to disk"}.get(
                    self.appendfsync, "may lose the last traces it accepted")
        return (f"a 202 means the trace is in Redis's append-only file (appendfsync "
                f"{self.appendfsync}): a crash of Redis {loss}, and a failover loses what the "
                "replica had not received")

    def problems(self) -> list[str]:
        """Settings under which accepted traces can be lost without a crash."""
        found = []
        if not self.appendonly:
            found.append("appendonly is no: set appendonly yes")
        if self.maxmemory_policy != "noeviction":
            found.append(f"maxmemory-policy is {self.maxmemory_policy}: Redis may evict unread "
                         "traces; set noeviction (a full Redis then refuses, and we answer 503)")
        return found


def pack_command(*args: bytes) -> bytes:
    """One command in RESP, as Redis reads it: an array of bulk strings (what redis-py's
    ``Connection.pack_command`` makes of bytes arguments; a property test holds them equal)."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)


class ReplyLost(redis.RedisError):
    """A command was sent whole and its reply never came (a timeout, a connection cut while
    reading; the cause is chained): Redis may have run it, or not."""


# Error replies that redis-py raises as ConnectionError: Redis answered them, having run
# nothing, so they are neither a lost reply nor a reason to retry on a new connection.
_REFUSALS = (redis.exceptions.BusyLoadingError, redis.exceptions.AuthenticationError,
             redis.exceptions.AuthorizationError)


@dataclass(frozen=True, slots=True)
class Reply:
    """Redis's reply to a call, and whether an earlier attempt of it lost its reply (Redis
    may have run the command twice)."""

    value: Any
    after_lost_reply: bool = False


class Appender:
    """Runs one packed command a request on a connection of its own, reused from request to
    request.

    Why not the client's ``execute_command``: on this hot path redis-py's client spends 60-75 us
    of CPU a command (the pool's check for unread data on every checkout, its retry wrapper,
    observability hooks), against ~40 us for the same ``Connection`` used directly
    (20,000 appends from one client; the README's Benchmarks section). The connection is still redis-py's,
    built from the pool's settings: it connects, authenticates (TLS, passwords, unix sockets,
    the database, RESP3: whatever the URL says), parses the reply (hiredis) and maps errors. The
    pool does not count these connections (its ``max_connections`` would be used up by
    connections dropped after failures, which only ``release`` gives back). What the pool's
    checks guarded against is kept here: a connection whose command failed in any way is
    disconnected, never reused with a half-read reply in it; connections are per process (a
    forked child starts with none) and one thread or greenlet uses a connection at a time (idle
    ones wait in a list: ``pop`` and ``append`` are atomic). So a process holds as many
    connections as it ever had appends in flight at once: one in a sync worker, at most
    gunicorn's ``worker_connections`` in a gevent worker (200 in gunicorn.conf.py).
    """

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[Any] = []
        self._pid = os.getpid()

    def call(self, packed: bytes) -> Reply:
        """Send ``packed``; Redis's reply (``redis.RedisError`` when it failed, :class:`ReplyLost`
        when Redis may have run it all the same).

        A reused connection that turns out broken (Redis restarted, or an idle connection cut)
        gets one retry on a new connection; a timeout does not (Redis may be busy, and a
        second wait only doubles the client's). A retried command may have run once already
        (``after_lost_reply``): a retried append's entries may then reach the stream twice, with
        the same event ids, and the consumers store them once."""
        fresh, conn = self._take()
        try:
            return Reply(self._run(conn, packed))
        except ReplyLost as lost:
            if fresh or not isinstance(lost.__cause__, redis.ConnectionError):  # a timeout
                raise
            first: ReplyLost | None = lost
        except redis.ConnectionError as exc:  # while sending: Redis ran nothing
            if fresh or isinstance(exc, _REFUSALS):
                raise
            first = None
        try:
            return Reply(self._run(self._new(), packed), after_lost_reply=first is not None)
        except redis.exceptions.NoScriptError as again:  # a restarted Redis: the caller loads it
            if first is not None:
                raise again from first  # and learns that the first attempt's fate is unknown
            raise
        except redis.RedisError as again:
            if first is not None and not isinstance(again, ReplyLost):
                raise ReplyLost("no reply, then " + type(again).__name__) from again
            raise

    def close(self) -> None:
        """Disconnect the idle connections (one in use is disconnected when its call ends)."""
        while self._idle:
            self._idle.pop().disconnect()

    def _new(self) -> Any:
        return self._pool.connection_class(**self._pool.connection_kwargs)

    def _take(self) -> tuple[bool, Any]:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self._idle, self._pid = [], os.getpid()
        try:
            return False, self._idle.pop()
        except IndexError:
            return True, self._new()

    def _run(self, conn: Any, packed: bytes) -> Any:
        try:
            # A list: a bare bytes would be sent int by int. A command cut short while sending
            # never runs: Redis runs only what it has read whole.
            conn.send_packed_command([packed])
        except BaseException:
            conn.disconnect()
            raise
        try:
            reply = conn.read_response()
        except redis.ResponseError:  # Redis's error reply, read whole: the connection is fine
            self._idle.append(conn)
            raise
        except BaseException as exc:
            conn.disconnect()  # the reply may be half read: this connection is never reused
            if isinstance(exc, redis.RedisError) and not isinstance(exc, _REFUSALS):
                raise ReplyLost(type(exc).__name__) from exc
            raise
        self._idle.append(conn)
        return reply


class TraceStream:
    """Appends traces to one Redis stream, all of a request's or none."""

    def __init__(self, url: str, stream: str, max_length: int, timeout: float = 2.0) -> None:
        self.stream = stream
        self.max_length = max_length
        # Typed Any: redis-py annotates every reply "Awaitable | Any" (sync and async share them).
        self.client: Any = redis.Redis.from_url(url, socket_timeout=timeout,
                                                socket_connect_timeout=timeout)
        self._appender = Appender(self.client.connection_pool)
        self._head = (b"EVALSHA", _APPEND_SHA, b"1", stream.encode(), str(max_length).encode())

    def append(self, entries: Sequence[bytes]) -> None:
        """Append every entry, or none; :class:`IngestError` 503 (with a retry delay) when
        Redis cannot be reached or the stream is at its limit. The message says whether
        nothing was stored, or the traces may have been (Redis's reply was lost)."""
        packed = pack_command(*self._head, *entries)
        lost = False  # whether an attempt lost its reply (Redis may have run it)
        try:
            try:
                reply = self._appender.call(packed)
            except redis.exceptions.NoScriptError as exc:  # a restarted Redis has forgotten it
                lost = isinstance(exc.__cause__, ReplyLost)
                self.client.script_load(_APPEND)  # EVALSHA ran nothing: sending again is safe
                reply = self._appender.call(packed)
        except ReplyLost as exc:
            raise IngestError(503, f"the trace queue did not answer ({exc}): {_MAYBE}",
                              RETRY_SECONDS) from None
        except redis.RedisError as exc:
            raise IngestError(503, f"the trace queue is unavailable ({type(exc).__name__}): "
                                   f"{_MAYBE if lost else _NOTHING}", RETRY_SECONDS) from None
        if reply.value == -1:
            raise IngestError(503, f"the trace queue is full (TRACE_QUEUE_MAX_LENGTH="
                                   f"{self.max_length}): "
                                   f"{_MAYBE if lost or reply.after_lost_reply else _NOTHING}",
                              RETRY_SECONDS)

    def close(self) -> None:
        """Disconnect from Redis (a later call connects again)."""
        self._appender.close()
        self.client.close()

    def length(self) -> int:
        """Entries in the stream: unread, or read and not yet acknowledged."""
        return int(self.client.xlen(self.stream))

    def durability(self) -> Durability:
        """Redis's persistence settings (CONFIG GET; raises ``redis.RedisError``)."""
        def get(name: str) -> str:
            value = self.client.config_get(name).get(name, "")
            return value.decode() if isinstance(value, bytes) else str(value)
        return Durability(get("appendonly") == "yes", get("appendfsync"), get("maxmemory-policy"))


def queue_status(redis_client: redis.Redis, stream: str, group: str) -> dict[str, Any]:
    """Length, pending per consumer, the oldest unacknowledged entry's age, lag and dead
    letters: what ``flask queue status`` prints."""
    client: Any = redis_client  # see TraceStream.__init__ on redis-py's reply types
    status: dict[str, Any] = {"stream": stream, "group": group, "length": 0, "pending": 0,
                              "consumers": {}, "oldest_pending_seconds": None, "lag": None,
                              "dead_letters": int(client.xlen(dead_stream(stream)))}
    if not client.exists(stream):
        return status
    status["length"] = int(client.xlen(stream))
    groups = {row["name"].decode(): row for row in client.xinfo_groups(stream)}
    if group not in groups:
        return status
    status["lag"] = groups[group].get("lag")
    summary = client.xpending(stream, group)
    status["pending"] = int(summary["pending"])
    status["consumers"] = {row["name"].decode(): int(row["pending"])
                           for row in summary.get("consumers") or []}
    if summary["pending"]:
        oldest_ms = int(summary["min"].split(b"-")[0])
        status["oldest_pending_seconds"] = round(max(0.0, time.time() - oldest_ms / 1000), 3)
    return status

