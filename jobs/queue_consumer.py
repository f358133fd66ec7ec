"""The consumer side of the durable ingest path: Redis stream -> telemetry_traces, exactly once.

Any number of consumers, on any hosts, share one consumer group (``TRACE_QUEUE_GROUP``). Each
turn a consumer takes one batch (up to ``TRACE_BATCH_SIZE`` entries), first from what it holds
already (a batch it could not write), then from consumers that died (entries idle longer than
``TRACE_QUEUE_CLAIM_SECONDS``, claimed with XAUTOCLAIM), then new entries. It writes the batch
through the writer's own :class:`~trace_service.sink.TraceSink`: rows and their event ids in one
transaction, an id already stored counted as a duplicate and not stored again. Only after the
commit does it acknowledge the entries and delete them from the stream (one MULTI), so:

* a consumer killed between its commit and its acknowledgement leaves the entries pending; the
  consumer that claims them finds their ids stored and writes nothing twice;
* while the database is down the entries stay in the stream (the breaker spaces the retries),
  and the backlog drains when it is back;
* an entry that cannot be stored (a row the database refuses for its values, a masking error,
  an entry that is not a trace), or that was delivered ``TRACE_QUEUE_MAX_DELIVERIES`` times
  without being stored (it keeps killing its consumers), goes to the dead-letter stream
  ``<stream>:dead`` with the reason, and is counted there: never dropped silently.

The entries hold masked traces (``trace_service.stream_entry``), so the consumer only writes.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis

from governance.errors import TraceInputError
from trace_service.breaker import OPEN, CircuitBreaker
from trace_service.http.stream import dead_stream
from trace_service.queue import DropReason, TraceItem, WriteResult
from trace_service.sink import TraceSink
from trace_service.stream_entry import FIELD, decode_entry

logger = logging.getLogger("jobs.queue_consumer")

Entry = tuple[bytes, dict[bytes, bytes]]


# How often, per claim time, a consumer looks for entries that a dead consumer left: such an
# entry is taken at most claim_seconds * (1 + 1 / CLAIM_LOOKS) after its last delivery.
CLAIM_LOOKS = 10
# Seconds the store keeps its database connection from one batch to the next
# (TraceSink.keep_connection): a backlog writes batch after batch on one connection, three round
# trips each. A read that finds the stream empty gives it back, and a batch that comes longer
# than this after the one before takes (and pings) one from the pool.
KEEP_CONNECTION_SECONDS = 5.0
# CPython's default is 5 ms: see use_a_short_switch_interval.
SWITCH_INTERVAL = 0.0005


def use_a_short_switch_interval() -> None:
    """Let the store thread have the GIL soon after the database answers, in a consumer's own
    process (``queue consume``; a process-wide setting, so never in a process that is not the
    consumer's alone).

    While the store thread waits on the database, this thread decodes and prepares the next
    batch without pausing; with CPython's 5 ms switch interval, each answer of the database
    then waited up to 5 ms for the GIL, several times a batch. At 0.5 ms, one consumer went
    from 11.5k to 13.4k rows/s (bench/consume.py)."""
    sys.setswitchinterval(SWITCH_INTERVAL)


def default_name() -> str:
    """A consumer name unique to this process: ``<host>-<pid>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class ConsumerCounts:
    """What one consumer did since it started."""

    batches: int = 0
    written: int = 0
    duplicates: int = 0
    claimed: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    discarded: Counter[str] = field(default_factory=Counter)  # opted out since they were queued
    outages: int = 0


def consumer_counters(counts: ConsumerCounts) -> dict[str, int]:
    """The consumer's cumulative counters under the names ``trace_counter_snapshots`` keeps
    (``queue.written``, ``queue.duplicates``, ``queue.dead.<reason>``), for the reports."""
    values = {"queue.written": counts.written, "queue.duplicates": counts.duplicates,
              "queue.claimed": counts.claimed, "queue.outages": counts.outages}
    values.update({f"queue.dead.{reason}": count for reason, count in counts.dead.items()})
    values.update({f"queue.discarded.{reason}": count for reason, count in counts.discarded.items()})
    return values


@dataclass(frozen=True)
class QueueSettings:
    """Where the consumer reads and how."""

    stream: str
    group: str
    name: str
    batch_size: int = 500
    claim_seconds: float = 60.0
    max_deliveries: int = 5
    # How long a read waits for new entries: also how soon a stop is seen.
    block_ms: int = 1000


def _stored_whole(result: WriteResult | Exception) -> bool:
    """Whether a store left nothing of its batch to take again or to park."""
    return isinstance(result, WriteResult) and not result.unavailable and not result.dropped


@dataclass
class _InFlight:
    """A batch in the store thread: its entries, their items, and the store's future."""

    kept: list[Entry]
    items: list[TraceItem]
    future: Future[WriteResult | Exception]


class Consumer:
    """Drains the stream into the table; :meth:`run` until :meth:`stop` (SIGTERM)."""

    def __init__(self, client: redis.Redis, sink: TraceSink, settings: QueueSettings,
                 breaker: CircuitBreaker | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # redis-py types every reply as "Awaitable | Any" (its sync and async clients share the
        # annotations); the sync client's replies are read as the Redis docs describe them.
        self.client: Any = client
        self.sink = sink
        self.settings = settings
        self.breaker = breaker or CircuitBreaker()
        self.counts = ConsumerCounts()
        self._stop = threading.Event()
        self._held = False  # entries of ours are pending: write them before anything new
        self._attempts: Counter[bytes] = Counter()  # failed attempts in a row, by entry id
        self._executor: ThreadPoolExecutor | None = None  # the store thread, started when needed
        self._in_flight: _InFlight | None = None  # the batch it stores
        self._clock = clock  # when to look for a dead consumer's entries
        self._claim_due = clock()

    # ------------------------------------------------------------------ the loop

    def ensure_group(self) -> None:
        """Create the stream and the group if missing (from the stream's start: nothing added
        before the first consumer is skipped)."""
        try:
            self.client.xgroup_create(self.settings.stream, self.settings.group, id="0",
                                      mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def stop(self) -> None:
        """Finish the batch in hand, then return from :meth:`run`."""
        self._stop.set()

    def run(self) -> ConsumerCounts:
        """Consume until stopped. Redis errors are logged and retried after a pause (Redis may
        be down when the consumer starts, or restart under it)."""
        self._held = True  # a restarted consumer of the same name resumes what it held
        grouped = False
        while not self._stop.is_set():
            try:
                if not grouped:
                    self.ensure_group()
                    grouped = True
                self.step()
            except redis.RedisError as exc:
                logger.warning("queue unavailable (%s); retrying", type(exc).__name__)
                self._held = True  # a batch may be stored and not yet acknowledged: take it again
                self._stop.wait(1.0)
        try:
            self.close()
        except redis.RedisError as exc:  # its entries stay pending: taken again, not doubled
            logger.warning("queue unavailable (%s) when stopping", type(exc).__name__)
        return self.counts

    def step(self) -> int:
        """One turn: wait out an open breaker, or take one batch and write it. Returns how many
        entries were settled (stored, duplicates or dead-lettered) in this turn.

        A full batch (a backlog is likely) is handed to the store thread and settled in the
        next turn, after the batch following it is taken and prepared: the database stores one
        batch while this thread reads, decodes and builds the next one. When the batch before
        was stored whole, the next one is handed over before the batch before is acknowledged,
        so the database is not idle while Redis acknowledges. A partial batch is written in
        this turn. A batch may so be in flight when this returns: :meth:`close` (which
        :meth:`run` calls) settles it."""
        if self.breaker.state == OPEN:  # nothing is in flight while it is open (_finish)
            delay = self.breaker.retry_at - time.monotonic()
            if delay > 0:
                self._stop.wait(min(delay, 1.0))
                return 0
            if not self._probe():
                return 0
        if self._held and self._in_flight is not None:
            # Entries of ours are to be read again from the start: the batch in flight among
            # them must be settled first, or it would be taken twice.
            return self._settle_in_flight()
        entries = self._next_batch()
        if not entries:
            if self._in_flight is None:
                self.sink.release_connection()  # idle: the store's connection goes back
            return self._settle_in_flight()
        settled, prepared = self._prepare(entries)
        full = len(entries) >= self.settings.batch_size
        done, self._in_flight = self._in_flight, None
        if done is not None:
            result = done.future.result()
            if prepared is not None and full and _stored_whole(result):
                # Nothing of the batch before is to be taken again: the next one may go first.
                # Acknowledged only after its commit, as every batch is.
                self._hand_over(prepared)
                return settled + self._finish(done.kept, done.items, result)
            settled += self._finish(done.kept, done.items, result)
            if self._held:
                # The batch before failed and is to be taken again: these entries (pending,
                # ours) follow it when the held entries are read, in the stream's order.
                return settled
        if prepared is None:
            return settled
        if not full:
            kept, items, batch = prepared
            return settled + self._finish(kept, items, self._store(batch))
        self._hand_over(prepared)
        return settled

    def close(self) -> int:
        """Settle the batch in flight, stop the store thread and give back the sink's kept
        connection; returns how many entries were settled. :meth:`run` calls it when stopped."""
        try:
            return self._settle_in_flight()
        finally:  # even when acknowledging the batch in flight failed (Redis went away)
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            self.sink.release_connection()

    # ------------------------------------------------------------------ taking entries

    def _next_batch(self) -> list[Entry]:
        settings = self.settings
        if self._held:
            held = self._read(settings.batch_size, "0")
            if held:
                return held
            self._held = False
        now = self._clock()
        if now >= self._claim_due:
            claimed = self._claim_from_the_dead()
            if claimed:
                return claimed  # and look again next turn: there may be more
            # An entry becomes claimable only after claim_seconds idle, so looking every turn
            # (a round trip and a scan of the pending entries in Redis, each batch) finds
            # nothing sooner than looking every tenth of that.
            self._claim_due = now + self.settings.claim_seconds / CLAIM_LOOKS
        # While a batch is in flight, no wait: with nothing new, it is settled at once.
        block = None if self._in_flight is not None else settings.block_ms
        return self._read(settings.batch_size, ">", block=block)

    def _read(self, count: int, start: str, block: int | None = None) -> list[Entry]:
        s = self.settings
        reply = self.client.xreadgroup(s.group, s.name, {s.stream: start}, count=count, block=block)
        if not reply:
            return []
        # Entries deleted while pending come back with no fields: nothing is left to write.
        entries: list[Entry] = reply[0][1]
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            self._ack(gone)
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def _claim_from_the_dead(self) -> list[Entry]:
        """Entries another consumer took and never acknowledged within the claim time."""
        s = self.settings
        reply = self.client.xautoclaim(s.stream, s.group, s.name, int(s.claim_seconds * 1000),
                                       start_id="0-0", count=s.batch_size)
        entries: list[Entry] = [(entry_id, fields) for entry_id, fields in reply[1] if fields]
        if self._in_flight is not None:  # ours, idle only because the store took that long
            in_flight = {entry_id for entry_id, _ in self._in_flight.kept}
            entries = [entry for entry in entries if entry[0] not in in_flight]
        deleted = list(reply[2]) if len(reply) > 2 else []
        if deleted:
            self._ack(deleted)
        if not entries:
            return []
        self.counts.claimed += len(entries)
        logger.info("claimed %d trace(s) from consumers that stopped answering", len(entries))
        # An entry delivered too often keeps killing the consumers that take it: park it.
        deliveries = self._deliveries([entry_id for entry_id, _ in entries])
        poison = [e for e in entries if deliveries.get(e[0], 0) > s.max_deliveries]
        if poison:
            self._dead_letter(poison, "delivered too often",
                              f"delivered more than {s.max_deliveries} times without being stored")
        return [e for e in entries if deliveries.get(e[0], 0) <= s.max_deliveries]

    def _deliveries(self, ids: list[bytes]) -> dict[bytes, int]:
        s = self.settings
        first, last = min(ids), max(ids)
        pending = self.client.xpending_range(s.stream, s.group, min=first, max=last,
                                             count=len(ids) * 2, consumername=s.name)
        return {row["message_id"]: int(row["times_delivered"]) for row in pending}

    # ------------------------------------------------------------------ writing them

    def _prepare(self, entries: list[Entry]) -> tuple[int, tuple[list[Entry], list[TraceItem], Any] | None]:
        """Decode ``entries`` and build their rows (``TraceSink.prepare``): how many were settled
        here (dead-lettered as not a trace, or by a failing prepare) and what is to be stored
        (None: nothing)."""
        items: list[TraceItem] = []
        kept: list[Entry] = []
        unreadable: list[Entry] = []
        for entry in entries:
            try:
                items.append(decode_entry(entry[1].get(FIELD, b"")))
                kept.append(entry)
            except TraceInputError:
                unreadable.append(entry)
        if unreadable:
            self._dead_letter(unreadable, "not a trace", "the entry is not a trace of this format")
        if not items:
            return len(unreadable), None
        try:
            batch = self.sink.prepare(items)
        except Exception as exc:  # a bug: the entries stay ours, and are counted
            return len(unreadable) + self._failed(kept, exc), None
        return len(unreadable), (kept, items, batch)

    def _store(self, batch: Any) -> WriteResult | Exception:
        """``sink.store(batch)``, in this thread or the store thread; what it raised, returned."""
        try:
            return self.sink.store(batch)
        except Exception as exc:  # a bug: _finish keeps the entries and counts them
            return exc

    def _hand_over(self, prepared: tuple[list[Entry], list[TraceItem], Any]) -> None:
        """Give a prepared batch to the store thread; settled in a later turn."""
        kept, items, batch = prepared
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="trace-consumer-store")
        self._in_flight = _InFlight(kept, items, self._executor.submit(self._store, batch))

    def _settle_in_flight(self) -> int:
        """Wait for the batch in the store thread, if any, and settle it."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return 0
        return self._finish(in_flight.kept, in_flight.items, in_flight.future.result())

    def _finish(self, kept: list[Entry], items: list[TraceItem], result: WriteResult | Exception) -> int:
        """Settle a stored batch: acknowledge what is stored, park what was refused, keep the
        whole batch when the database was unavailable (or the sink raised)."""
        if isinstance(result, Exception):
            return self._failed(kept, result)
        self._attempts.clear()
        if result.unavailable:
            return self._outage(result.last_error)
        self.breaker.record_success()
        self.counts.batches += 1
        self.counts.discarded.update({str(reason): n for reason, n in result.discarded.items()})
        if not result.dropped:
            self._stored(kept, result.written, result.duplicates)
            return len(kept)
        # Some rows were refused: write them one by one to learn which (the ones the batch
        # stored are duplicates now, by their event ids), and park the refused ones. The
        # counts are the batch's: the second pass only finds out who was who.
        self.counts.written += result.written
        self.counts.duplicates += result.duplicates
        settled = 0
        for entry, item in zip(kept, items, strict=True):
            single = self.sink.write([item])
            if single.unavailable:
                return settled + self._outage(single.last_error)
            if single.dropped:
                (reason,) = single.dropped
                self._dead_letter([entry], str(reason), single.last_error or str(reason))
            else:
                self._stored([entry], single.written, 0)
            settled += 1
        return settled

    def _failed(self, entries: list[Entry], exc: Exception) -> int:
        """The sink raised (it should not): keep the entries to try again, and park those that
        failed ``max_deliveries`` times in a row (``internal_error``) rather than loop for ever."""
        logger.exception("writing a batch of the stream failed: %s", type(exc).__name__)
        self._held = True
        for entry_id, _fields in entries:
            self._attempts[entry_id] += 1
        spent = [e for e in entries if self._attempts[e[0]] >= self.settings.max_deliveries]
        if spent:
            self._dead_letter(spent, str(DropReason.INTERNAL_ERROR), f"{type(exc).__name__} "
                              f"on {self.settings.max_deliveries} attempts in a row")
            for entry_id, _fields in spent:
                del self._attempts[entry_id]
        return len(spent)

    def _outage(self, error: str | None) -> int:
        """The database could not take the batch: keep the entries (they are ours, pending) and
        let the breaker space the retries."""
        self.counts.outages += 1
        self._held = True
        if self.breaker.record_failure(time.monotonic()):
            logger.error("trace database unavailable; the stream holds the traces until it is "
                         "back: %s", error)
        return 0

    def _probe(self) -> bool:
        if not self.breaker.try_half_open(time.monotonic()):
            return False
        try:
            self.sink.probe()
        except Exception as exc:  # any failure keeps the breaker open
            self.breaker.record_failure(time.monotonic())
            logger.warning("trace database still unavailable: %s", exc)
            return False
        self.breaker.record_success()
        logger.info("trace database reachable again; draining the stream")
        return True

    def _stored(self, entries: Iterable[Entry], written: int, duplicates: int) -> None:
        self._ack([entry_id for entry_id, _ in entries])
        self.counts.written += written
        self.counts.duplicates += duplicates

    def _ack(self, ids: list[bytes], pipe: Any = None) -> None:
        """Acknowledge and delete, together: the stream's length stays the backlog. ``pipe``,
        when given, is a MULTI already holding what must happen with them."""
        s = self.settings
        pipe = pipe if pipe is not None else self.client.pipeline(transaction=True)
        pipe.xack(s.stream, s.group, *ids)
        pipe.xdel(s.stream, *ids)
        pipe.execute()

    def _dead_letter(self, entries: list[Entry], reason: str, error: str) -> None:
        """Move ``entries`` to the dead-letter stream with why, in one MULTI with their
        acknowledgement (never in both streams, never in neither)."""
        s = self.settings
        pipe = self.client.pipeline(transaction=True)
        for entry_id, fields in entries:
            pipe.xadd(dead_stream(s.stream), {FIELD: fields.get(FIELD, b""), b"id": entry_id,
                                              b"reason": reason, b"error": error[:500],
                                              b"consumer": s.name})
        self._ack([entry_id for entry_id, _ in entries], pipe)
        self.counts.dead[reason] += len(entries)
        logger.error("%d trace(s) moved to %s (%s): %s", len(entries), dead_stream(s.stream),
                     reason, error[:200])
