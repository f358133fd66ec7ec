"""The worker, the queue and the breaker with an in-memory sink: no database, so what is tested is
the hand-off, the batching, the counting and the outage handling alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trace_service.config import WriterConfig
from trace_service.memory_sink import MemorySink
from trace_service.queue import DropReason, TraceItem, WriteResult
from trace_service.writer import TraceWriter

MakeWriter = Callable[..., tuple[TraceWriter, MemorySink]]


@pytest.fixture
def make_writer() -> Iterator[MakeWriter]:
    writers: list[TraceWriter] = []

    def make(strict: bool = False, **settings: Any) -> tuple[TraceWriter, MemorySink]:
        sink = MemorySink()
        config = WriterConfig(**{"flush_interval": 0.01, "breaker_base_delay": 0.05,
                                 "breaker_max_delay": 0.05, **settings})
        writer = TraceWriter(None, config, sink=sink, strict=strict)
        writers.append(writer)
        return writer, sink

    yield make
    for writer in writers:
        writer.close(timeout=2)


def test_records_reach_the_sink_in_order_in_batches_of_at_most_the_batch_size(
        make_writer: MakeWriter) -> None:
    writer, sink = make_writer(batch_size=4)
    for number in range(10):
        assert writer.record(f"x.n{number}") is True
    assert writer.flush(5)
    assert [item.event_key for item in sink.items] == [f"x.n{number}" for number in range(10)]
    assert sum(sink.batches) == 10 and max(sink.batches) <= 4
    stats = writer.stats()
    assert (stats.submitted, stats.written, stats.dropped, stats.pending) == (10, 10, 0, 0)


def test_an_outage_opens_the_breaker_and_every_lost_trace_is_counted(make_writer: MakeWriter) -> None:
    writer, sink = make_writer(batch_size=1, breaker_threshold=2)
    sink.fail("connection refused")
    for number in range(6):
        writer.record(f"x.down{number}")
        writer.flush(1)
    stats = writer.stats()
    assert stats.breaker == "open"
    assert stats.dropped_by_reason["db_error"] >= 2  # the failures that opened the breaker
    assert stats.dropped_by_reason["db_error"] + stats.dropped_by_reason["circuit_open"] == 6
    assert stats.pending == 0 and not sink.items
    assert stats.last_error == "connection refused"


def test_writing_resumes_once_the_probe_succeeds(make_writer: MakeWriter) -> None:
    writer, sink = make_writer(batch_size=1, breaker_threshold=1)
    sink.fail()
    writer.record("x.lost")
    writer.flush(1)
    assert writer.stats().breaker == "open"
    sink.recover()
    deadline = time.monotonic() + 5
    while writer.stats().breaker != "closed" and time.monotonic() < deadline:
        time.sleep(0.02)  # the worker probes after the breaker's delay (0.05 s here)
    assert writer.record("x.back") is True
    assert writer.flush(5)
    assert [item.event_key for item in sink.items] == ["x.back"]
    assert writer.stats().written == 1


def test_inline_mode_writes_in_the_callers_thread(make_writer: MakeWriter) -> None:
    writer, sink = make_writer(writer_mode="inline")
    assert writer.record("x.inline") is True
    assert [item.event_key for item in sink.items] == ["x.inline"]  # before any flush
    sink.fail()
    assert writer.record("x.inline.down") is False
    assert writer.stats().dropped_by_reason["db_error"] == 1


def test_a_strict_writer_raises_on_lost_traces_at_flush(make_writer: MakeWriter) -> None:
    from trace_service.errors import TraceWriteError

    writer, sink = make_writer(strict=True)
    sink.fail("disk full")
    writer.record("x.lost")
    with pytest.raises(TraceWriteError, match="disk full"):
        writer.flush(2)
    writer.strict = False


def test_a_writer_needs_an_engine_or_a_sink() -> None:
    with pytest.raises(TypeError, match="needs an engine, or a sink"):
        TraceWriter(None, WriterConfig())


class GatedStagedSink(MemorySink):
    """A two-stage sink (trace_service.worker.StagedSink) whose store waits for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.storing = threading.Event()
        self.prepared: list[list[str]] = []

    def prepare(self, items: list[TraceItem]) -> list[TraceItem]:
        self.prepared.append([item.event_key for item in items])
        return items

    def store(self, batch: list[TraceItem]) -> WriteResult:
        self.storing.set()
        assert self.release.wait(10)
        return self.write(batch)


def _staged_writer(sink: GatedStagedSink, **settings: Any) -> TraceWriter:
    config = WriterConfig(**{"flush_interval": 0.01, "batch_size": 2, "breaker_base_delay": 60,
                             "breaker_max_delay": 60, **settings})
    return TraceWriter(None, config, sink=sink, strict=False)


def _record_backlog(writer: TraceWriter, keys: list[str]) -> None:
    """Record ``keys`` before the writer thread starts: a backlog of full batches, which the
    thread pipelines (a partial batch it writes in one go, with nothing to overlap)."""
    worker = writer._worker
    start = worker.start
    worker.start = lambda: True  # type: ignore[method-assign]
    try:
        for key in keys:
            assert writer.record(key)
    finally:
        del worker.start
    assert start()


def test_a_partial_batch_is_written_by_the_worker_thread_itself() -> None:
    sink = GatedStagedSink()
    sink.release.set()
    writer = _staged_writer(sink, batch_size=10)
    try:
        writer.record("x.a")
        assert writer.flush(10)
        assert sink.prepared == [] and [item.event_key for item in sink.items] == ["x.a"]
    finally:
        writer.close(2)


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_next_batch_is_prepared_while_the_one_before_is_stored() -> None:
    sink = GatedStagedSink()
    writer = _staged_writer(sink)
    try:
        _record_backlog(writer, ["x.a", "x.b", "x.c", "x.d"])  # two full batches
        assert sink.storing.wait(10)  # batch 1 is in the store stage, held there
        _wait_for(lambda: len(sink.prepared) == 2)  # batch 2 built while batch 1 is stored
        assert writer.stats().pending == 4 and sink.items == []
        sink.release.set()
        assert writer.flush(10)
        assert [item.event_key for item in sink.items] == ["x.a", "x.b", "x.c", "x.d"]
        stats = writer.stats()
        assert (stats.written, stats.dropped, stats.pending) == (4, 0, 0)
    finally:
        sink.release.set()
        writer.close(2)


def test_a_batch_prepared_while_the_database_went_down_is_counted_circuit_open() -> None:
    sink = GatedStagedSink()
    writer = _staged_writer(sink, breaker_threshold=1)
    try:
        sink.fail("connection refused")
        _record_backlog(writer, ["x.a", "x.b", "x.c", "x.d"])
        assert sink.storing.wait(10)
        _wait_for(lambda: len(sink.prepared) == 2)
        sink.release.set()  # batch 1 fails, the breaker opens, batch 2 is not sent
        _wait_for(lambda: writer.stats().pending == 0)
        stats = writer.stats()
        assert stats.breaker == "open"
        # Only the first batch was sent; the one prepared meanwhile was not.
        assert sink.batches == [2] and sink.items == []
        assert (stats.dropped_by_reason["db_error"], stats.dropped_by_reason["circuit_open"]) == (2, 2)
    finally:
        sink.release.set()
        writer.close(2)


class FailingStagedSink(GatedStagedSink):
    """Its staged stores fail as a database outage would (once released); its writes work."""

    def store(self, batch: list[TraceItem]) -> WriteResult:
        self.storing.set()
        assert self.release.wait(10)
        result = WriteResult(unavailable=True)
        result.drop(DropReason.DB_ERROR, len(batch), "connection refused")
        return result


def test_a_store_that_opens_the_breaker_is_not_followed_by_a_write_that_closes_it() -> None:
    # Found by review: a partial batch written after the failing store used to close the breaker
    # by succeeding, while callers stayed refused ("accepting" is only restored by a probe).
    sink = FailingStagedSink()
    writer = _staged_writer(sink, breaker_threshold=1)
    try:
        _record_backlog(writer, ["x.a", "x.b"])  # a full batch: into the stage
        assert sink.storing.wait(10)
        time.sleep(0.05)  # the worker waits for the store (the queue holds less than a batch)
        assert writer.record("x.c")
        sink.release.set()
        _wait_for(lambda: writer.stats().pending == 0)
        stats = writer.stats()
        assert stats.breaker == "open" and not writer.accepting
        assert (stats.dropped_by_reason["db_error"], stats.dropped_by_reason["circuit_open"]) == (2, 1)
        assert sink.items == []  # x.c was not written with the breaker open
    finally:
        sink.release.set()
        writer.close(2)


def test_close_while_a_batch_is_in_the_stage_leaves_nothing_pending() -> None:
    # Found by review: close() can empty the queue between the worker's look at its length and
    # its take(); the worker then stopped with the stage's batch unsettled, pending for ever.
    sink = GatedStagedSink()
    writer = _staged_writer(sink)
    worker = writer._worker
    worker.start = lambda: True  # type: ignore[method-assign]  # no thread: steps run by hand
    queue = worker.queue
    try:
        for key in ("x.a", "x.b", "x.c", "x.d"):
            assert writer.record(key)
        assert worker._step()  # [a, b] prepared and in the stage
        assert sink.storing.wait(10)
        take = queue.take

        def close_meanwhile(limit: int) -> list[TraceItem]:
            queue.take = take  # type: ignore[method-assign]
            queue.discard(DropReason.SHUTDOWN)
            worker.stopping = True
            return take(limit)

        queue.take = close_meanwhile  # type: ignore[method-assign]
        sink.release.set()
        while worker._step():
            pass
        stats = writer.stats()
        assert (stats.written, stats.dropped_by_reason["shutdown"], stats.pending) == (2, 2, 0)
        assert not worker.stage or not worker.stage.busy
    finally:
        sink.release.set()
        del worker.start
        writer.close(2)


def test_a_store_failure_sends_the_batch_prepared_meanwhile_through_a_fresh_write() -> None:
    # A failed store may have changed the table's layout, and the next prepare would wait for the
    # pool's only connection while the stage holds it: the prepared batch is written anew.
    sink = FailingStagedSink()
    writer = _staged_writer(sink, breaker_threshold=5)
    try:
        _record_backlog(writer, ["x.a", "x.b", "x.c", "x.d"])
        assert sink.storing.wait(10)
        _wait_for(lambda: len(sink.prepared) == 2)
        sink.release.set()
        assert writer.flush(10)
        stats = writer.stats()
        assert stats.breaker == "closed"
        assert (stats.written, stats.dropped_by_reason["db_error"]) == (2, 2)
        assert [item.event_key for item in sink.items] == ["x.c", "x.d"]  # by write(), not store()
    finally:
        sink.release.set()
        writer.close(2)


class GatedWriteSink(MemorySink):
    """A one-stage sink whose first write waits for ``release``; every batch's keys are kept."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writing = threading.Event()
        self.keys: list[list[str]] = []

    def write(self, items: list[TraceItem]) -> WriteResult:
        self.keys.append([item.event_key for item in items])
        self.writing.set()
        assert self.release.wait(10)
        return super().write(items)


def test_after_a_partial_write_the_next_batch_fills_before_it_is_written() -> None:
    """Records that arrive while a partial batch is written wait for a full batch (or flush,
    close, flush_interval), rather than being written at once: under steady ingest that chained
    a transaction of a few rows after another."""
    sink = GatedWriteSink()
    config = WriterConfig(flush_interval=30, batch_size=10, breaker_base_delay=60, breaker_max_delay=60)
    writer = TraceWriter(None, config, sink=sink, strict=False)
    try:
        assert writer.record("x.a")  # starts the thread, which takes what is queued at once
        assert sink.writing.wait(10)
        for key in ("x.b", "x.c"):
            assert writer.record(key)  # during the write
        sink.release.set()
        _wait_for(lambda: writer.stats().written >= 1)
        time.sleep(0.3)  # the old loop wrote x.b and x.c within a millisecond of the first write
        assert sink.keys == [["x.a"]] and writer.stats().pending == 2
        more = [f"x.{n}" for n in range(8)]
        for key in more:
            assert writer.record(key)  # the tenth queued record wakes the thread
        _wait_for(lambda: writer.stats().written == 11)
        assert sink.keys == [["x.a"], ["x.b", "x.c", *more]]
        assert writer.record("x.last")
        assert writer.flush(10)  # flush() does not wait for the interval
        assert sink.keys[-1] == ["x.last"]
    finally:
        sink.release.set()
        started = time.monotonic()
        assert writer.close(10)
        assert time.monotonic() - started < 10  # close() does not wait for the interval either


def test_a_partial_write_that_finds_the_database_down_does_not_wait_for_the_next_batch() -> None:
    """The wait for a batch to fill is not for outages: the queue is dropped (circuit_open) and
    the probing starts at once, not after flush_interval."""
    sink = GatedWriteSink()
    config = WriterConfig(flush_interval=30, batch_size=10, breaker_threshold=1,
                          breaker_base_delay=60, breaker_max_delay=60)
    writer = TraceWriter(None, config, sink=sink, strict=False)
    try:
        assert writer.record("x.a")
        assert sink.writing.wait(10)
        assert writer.record("x.b")  # queued during the write that is about to fail
        sink.fail()
        sink.release.set()
        _wait_for(lambda: writer.stats().pending == 0)
        stats = writer.stats()
        dropped = {reason: count for reason, count in stats.dropped_by_reason.items() if count}
        assert dropped == {DropReason.DB_ERROR.value: 1, DropReason.CIRCUIT_OPEN.value: 1}
    finally:
        sink.release.set()
        writer.close(10)
