"""A sink that keeps what it is given in memory: for tests of the worker, the queue and the apps
that use the writer, as OpenTelemetry's SDK has an in-memory exporter.

::

    sink = MemorySink()
    writer = TraceWriter(engine, config, sink=sink)   # engine: any, nothing is written to it
    writer.record("x.y"); writer.flush(1)
    assert [item.event_key for item in sink.items] == ["x.y"]

:meth:`MemorySink.fail` makes it behave as a database that is down (each batch dropped as
``db_error`` and flagged ``unavailable``, the probe failing) until :meth:`MemorySink.recover`.
Items are kept as the writer queued them (metadata frozen, not yet masked or encoded).
"""

from __future__ import annotations

import threading

from trace_service.errors import SinkUnavailable
from trace_service.queue import DropReason, TraceItem, WriteResult


class MemorySink:
    """Keeps written items in :attr:`items`; thread-safe (the worker writes from its thread)."""

    def __init__(self) -> None:
        self.items: list[TraceItem] = []
        self.batches: list[int] = []  # the size of each write() call, in order
        self._down: str | None = None
        self._lock = threading.Lock()

    def write(self, items: list[TraceItem]) -> WriteResult:
        """Keep ``items`` (or, while failing, drop them all as ``db_error``)."""
        with self._lock:
            self.batches.append(len(items))
            if self._down is not None:
                result = WriteResult(unavailable=True)
                result.drop(DropReason.DB_ERROR, len(items), self._down)
                return result
            self.items.extend(items)
            return WriteResult(written=len(items))

    def probe(self) -> None:
        """Raise :class:`SinkUnavailable` while failing."""
        if self._down is not None:
            raise SinkUnavailable(self._down)

    def fail(self, error: str = "memory sink set to fail") -> None:
        """Behave as a database that is down, until :meth:`recover`."""
        self._down = error

    def recover(self) -> None:
        """Take writes again."""
        self._down = None
