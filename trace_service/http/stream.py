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

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

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
DEAD_SUFFIX = ":dead"
RETRY_SECONDS = 5.0  # what a refused client is told to wait: a consumer batch or a reconnect


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


class TraceStream:
    """Appends traces to one Redis stream, all of a request's or none."""

    def __init__(self, url: str, stream: str, max_length: int, timeout: float = 2.0) -> None:
        self.stream = stream
        self.max_length = max_length
        # Typed Any: redis-py annotates every reply "Awaitable | Any" (sync and async share them).
        self.client: Any = redis.Redis.from_url(url, socket_timeout=timeout,
                                                socket_connect_timeout=timeout)
        self._append = self.client.register_script(_APPEND)

    def append(self, entries: Sequence[bytes]) -> None:
        """Append every entry, or none; :class:`IngestError` 503 (with a retry delay) when
        Redis cannot be reached or the stream is at its limit."""
        retry = "nothing was stored; retry after the Retry-After delay"
        try:
            added = self._append(keys=[self.stream], args=[self.max_length, *entries])
        except redis.RedisError as exc:
            raise IngestError(503, f"the trace queue is unavailable ({type(exc).__name__}): "
                                   f"{retry}", RETRY_SECONDS) from None
        if added == -1:
            raise IngestError(503, f"the trace queue is full (TRACE_QUEUE_MAX_LENGTH="
                                   f"{self.max_length}): {retry}", RETRY_SECONDS)

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

