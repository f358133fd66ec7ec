"""The worker, the queue and the breaker with an in-memory sink: no database, so what is tested is
the hand-off, the batching, the counting and the outage handling alone."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trace_service.config import WriterConfig
from trace_service.memory_sink import MemorySink
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
