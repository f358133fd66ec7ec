"""The writer's background side: a daemon thread that drains the queue into the database.

:class:`Worker` owns the thread, the circuit breaker and the sink. It takes batches from the
:class:`~trace_service.queue.TraceQueue`, writes them with the sink (one multi-row INSERT,
its own transaction), and settles every item as written or dropped.

A sink that writes in two stages (:class:`StagedSink`: ``prepare`` masks and encodes, ``store``
sends) is run as a pipeline: a second daemon thread, :class:`StoreStage`, stores batch *n* while
the worker thread prepares batch *n + 1*. Storing waits on the database with the GIL released,
so the masking of one batch overlaps the database's work on the one before, on another core:
serial, the two added up to 0.49-0.64x raw ``executemany`` (bench/writer.py). One batch at most
is in the store stage, and the worker thread alone settles results and drives the breaker, in
batch order. While the breaker is open it
drops what is queued (``circuit_open``), tells callers to drop at once (``accepting``), and
probes the database with backoff until it answers. In inline mode the caller's thread runs
:meth:`Worker.write_now` instead, through the same sink and breaker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future
from queue import SimpleQueue
from typing import Any, Protocol, runtime_checkable

from trace_service.breaker import OPEN, CircuitBreaker
from trace_service.config import WriterConfig
from trace_service.log_throttle import ThrottledLogger
from trace_service.queue import DropReason, Sink, TraceItem, TraceQueue, WriteResult

logger = logging.getLogger("trace_service.writer")


@runtime_checkable
class StagedSink(Protocol):
    """A sink whose write is ``store(prepare(items))``: ``prepare`` sends nothing, ``store``
    only sends (:class:`~trace_service.sink.TraceSink`). Neither raises. The worker calls the
    two halves for full batches, and ``write`` for the rest: a subclass changes the halves."""

    def prepare(self, items: list[TraceItem]) -> Any:
        """The items built into what :meth:`store` sends, with what did not make it counted."""

    def store(self, batch: Any) -> WriteResult:
        """Send a prepared batch; its result, every item counted once."""


def _internal_error(count: int, exc: Exception, stage: str) -> WriteResult:
    # A sink should never raise; if it does, the batch is still settled (as internal_error),
    # or it would stay pending for ever and flush() would hang. The type only: a message may
    # quote a value.
    return WriteResult(dropped=Counter({DropReason.INTERNAL_ERROR: count}),
                       last_error=f"{type(exc).__name__} in the sink's {stage}")


class StoreStage:
    """The pipeline's second thread: stores one prepared batch at a time.

    ``submit`` hands a batch over and returns at once; ``wait`` returns its result. Without a
    thread (the process is at its thread limit) ``submit`` stores in the caller's thread.
    """

    def __init__(self, sink: StagedSink, done: threading.Event) -> None:
        """``done`` is set each time a store finishes (the worker's wake-up event)."""
        self.sink = sink
        self._done = done
        self._jobs: SimpleQueue[tuple[Future[WriteResult], Any, int] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending: Future[WriteResult] | None = None

    @property
    def busy(self) -> bool:
        """Whether a submitted batch has not been waited for."""
        return self._pending is not None

    def submit(self, batch: Any, count: int) -> None:
        """Store ``batch`` (of ``count`` items) in the stage's thread; one at a time."""
        assert self._pending is None, "wait() for the batch in the stage first"
        future: Future[WriteResult] = Future()
        if self._started():
            self._jobs.put((future, batch, count))
        else:
            self._run_one(future, batch, count)
        self._pending = future  # only once the batch is in hand: its future will complete

    def done(self) -> bool:
        """Whether the batch in the stage is stored (its result ready)."""
        return self._pending is not None and self._pending.done()

    def wait(self) -> WriteResult:
        """The result of the batch in the stage (waiting for the store to finish)."""
        future, self._pending = self._pending, None
        assert future is not None, "nothing was submitted"
        return future.result()

    def stop(self) -> None:
        """Let the thread end once it is idle."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _started(self) -> bool:
        if self._thread is None:
            thread = threading.Thread(target=self._loop, name="trace-writer-store", daemon=True)
            try:
                thread.start()
            except Exception:  # at the thread limit (RuntimeError), or any other: store in the
                return False   # worker thread instead
            self._thread = thread
        return True

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._run_one(*job)

    def _run_one(self, future: Future[WriteResult], batch: Any, count: int) -> None:
        try:
            result = self.sink.store(batch)
        except Exception as exc:  # see _internal_error
            result = _internal_error(count, exc, "store")
        future.set_result(result)
        self._done.set()


class Worker:
    """Drains a :class:`TraceQueue` through a :class:`Sink`, behind a circuit breaker."""

    def __init__(self, queue: TraceQueue, sink: Sink, config: WriterConfig,
                 log: ThrottledLogger) -> None:
        self.queue = queue
        self.sink = sink
        self.config = config
        self.inline = config.writer_mode == "inline"
        self._log = log
        self.breaker = CircuitBreaker(
            config.breaker_threshold, config.breaker_base_delay, config.breaker_max_delay)
        self.wake = threading.Event()
        self.accepting = True  # False while the breaker is open (thread mode): callers drop
        self.stopping = False
        self.thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._start_retry_at = 0.0
        self.stage = StoreStage(sink, self.wake) if isinstance(sink, StagedSink) else None

    def start(self) -> bool:
        """Start the thread once (callers call this lazily on their first record); False when
        it cannot be started now.

        A process at its thread limit makes ``Thread.start`` raise ``RuntimeError``. The thread
        object is then forgotten, so a later call tries again, but not before
        ``flush_interval`` has passed: callers meanwhile drop at once instead of paying for a
        failing start on every record.
        """
        with self._start_lock:
            if self.thread is not None:
                return True
            now = time.monotonic()
            if now < self._start_retry_at:
                return False
            thread = threading.Thread(target=self._run, name="trace-writer", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:
                self._start_retry_at = now + self.config.flush_interval
                self._log.log(logging.ERROR, DropReason.NO_THREAD,
                              "trace writer thread cannot start, dropping traces: %s", exc)
                return False
            self.thread = thread
            return True

    def stop(self, timeout: float) -> None:
        """Let the thread finish (it exits once the queue is empty) and wait up to ``timeout``."""
        self.stopping = True
        self.wake.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, timeout))

    def _run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception as exc:  # the thread must outlive any bug
                self._log.log(logging.ERROR, "worker", "trace writer loop error: %r", exc)
                self.wake.wait(self.config.flush_interval)

    def _step(self) -> bool:
        """One turn of the thread; False when it should stop."""
        if self.breaker.state == OPEN:
            self.queue.discard(DropReason.CIRCUIT_OPEN)
            if self.stopping:
                return False
            delay = self.breaker.retry_at - time.monotonic()
            if delay > 0:
                self.wake.wait(delay)
                self.wake.clear()
                return True
            self._probe()
            return True
        stage = self.stage
        if stage is not None and stage.busy:
            if stage.done():
                result = stage.wait()
                self._settle(result)
                if result.unavailable:
                    # Back to the top: an open breaker drops the queue and probes (writing on
                    # would close the breaker and leave callers refused for good); a closed one
                    # writes on with a fresh look at the table.
                    return True
            elif len(self.queue) < self.config.batch_size:
                # Only a full batch is prepared while the store runs: records gather meanwhile
                # into a fuller one. Taking what is there at once made many small batches, a
                # commit each, where the serial writer sent one (bench/ingest.py: 0.46x).
                # Woken by the store's end or by a full queue (record() sets wake).
                self.wake.wait(self.config.flush_interval)
                self.wake.clear()
                return True
        batch = self.queue.take(self.config.batch_size)
        if not batch:
            if stage is not None and stage.busy:  # close() emptied the queue meanwhile
                self._settle(stage.wait())
                return True
            if self.stopping:
                if stage is not None:
                    stage.stop()
                return False
            self.wake.wait(self.config.flush_interval)
            self.wake.clear()
            return True
        if stage is None or (not stage.busy and len(batch) < self.config.batch_size):
            # No backlog (a partial batch): nothing to overlap with, so no hand-off to pay for.
            result = self._write(batch)
            self._settle(result)
            if not self.stopping and not result.unavailable:
                # Then let the next batch fill, as the first one did: until the queue holds a
                # full batch (record() sets wake), flush() or close() asks, or flush_interval
                # passes. Taking what came in during the write at once chained transactions of
                # ~3 rows each under steady ingest (bench/ingest.py: 579 commits in 10 s per
                # gunicorn worker, a fifth of its rows), each paying a commit for a few rows.
                # Not after an outage: the loop's top drops the queue and probes at once.
                self.wake.wait(self.config.flush_interval)
                self.wake.clear()
            return True
        try:
            prepared = stage.sink.prepare(batch)  # while the stage stores the batch before
        except Exception as exc:  # see _internal_error
            self._settle(_internal_error(len(batch), exc, "prepare"))
            return True
        if stage.busy:
            before = stage.wait()
            self._settle(before)
            if self.breaker.state == OPEN:
                # The batch before found the database down: this one is dropped with the queue.
                self.queue.settle(WriteResult(dropped=Counter({DropReason.CIRCUIT_OPEN: len(batch)})))
                return True
            if before.unavailable:
                # Prepared on a layout the failure may have changed, and the next prepare would
                # wait for the pool's connection while this one is stored: write it in this
                # thread, from its items, as the serial writer does.
                self._settle(self._write(batch))
                return True
        stage.submit(prepared, len(batch))
        return True

    def _write(self, batch: list[TraceItem]) -> WriteResult:
        """The sink's result for ``batch`` (``internal_error`` if the sink raises)."""
        try:
            return self.sink.write(batch)
        except Exception as exc:  # see _internal_error
            return _internal_error(len(batch), exc, "write")

    def discard_unless_started(self) -> bool:
        """After a failed :meth:`start`: drop what is queued (``no_thread``), unless another
        caller started the thread meanwhile (then it will write them); True if dropped."""
        with self._start_lock:
            if self.thread is not None:
                return False
            self.queue.discard(DropReason.NO_THREAD)
            return True

    def _probe(self) -> None:
        if not self.breaker.try_half_open(time.monotonic()):
            return
        try:
            self.sink.probe()
        except Exception as exc:  # any failure keeps the breaker open
            self.breaker.record_failure(time.monotonic())
            self._log.log(logging.WARNING, "probe", "trace database still unavailable: %s", exc)
            return
        self.breaker.record_success()
        self.accepting = True
        logger.info("trace database reachable again; writing resumed")

    def _settle(self, result: WriteResult) -> None:
        """Fold one write's outcome into the breaker, the counters and the log."""
        if result.unavailable:
            if self.breaker.record_failure(time.monotonic()):
                # Thread mode: callers drop at once until the thread's probe succeeds.
                # Inline mode keeps accepting: each call checks the breaker itself.
                self.accepting = self.inline
                self._log.log(logging.ERROR, "breaker",
                              "trace database unavailable, dropping traces until it recovers: %s",
                              result.last_error)
        else:
            self.breaker.record_success()
        self.queue.settle(result)
        for reason, count in result.dropped.items():
            self._log.log(logging.ERROR, reason, "%d trace(s) dropped (%s): %s", count, reason,
                          result.last_error)

    def write_now(self, item: TraceItem) -> bool:
        """Inline mode: write one item in the caller's thread; True if it was written."""
        self.queue.count_direct()
        if self.breaker.state == OPEN:
            self._probe()
            if self.breaker.state == OPEN:
                # Counted, but not folded into the breaker: a drop is not a successful write
                # (through _settle it closed the breaker, so every other call paid a timeout).
                self.queue.settle(WriteResult(dropped=Counter({DropReason.CIRCUIT_OPEN: 1})))
                return False
        result = self._write([item])
        self._settle(result)
        return result.written == 1
