"""The database goes away under a loaded writer, then comes back.

Promises checked (docs/design.md, "Writer"; the README's table of the writer's promises):
no exception reaches a caller; a caller's p99 cost while the database is down stays near its
cost while it is up (the breaker short-circuits); ``written + dropped == submitted`` exactly;
writing resumes by itself within seconds of the database coming back; no thread or connection
is left behind after ``close()``.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.reliability.conftest import Behind, percentile, wait_for
from trace_service.config import DatabaseURL
from trace_service.http.config import TestingConfig
from trace_service.writer import TraceWriter

pytestmark = pytest.mark.timeout(120)
OUTAGE_SECONDS = 3.0
CALLERS = 4


class Callers:
    """Threads calling ``record()`` in a loop, timing each call and keeping any exception."""

    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer
        self.phase = "up"
        self.timings: dict[str, list[float]] = {"up": [], "down": [], "back": []}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(n,)) for n in range(CALLERS)]

    def _loop(self, number: int) -> None:
        local: dict[str, list[float]] = {"up": [], "down": [], "back": []}
        i = 0
        while not self.stop.is_set():
            phase = self.phase
            started = time.perf_counter()
            try:
                self.writer.record("reliability.outage", actor_admin_id=number,
                                   metadata={"i": i, "thread": number})
            except BaseException as exc:  # what the test asserts never happens
                self.errors.append(exc)
            local[phase].append(time.perf_counter() - started)
            i += 1
            self.stop.wait(0.0005)
        with self._lock:
            for phase, values in local.items():
                self.timings[phase].extend(values)

    def __enter__(self) -> Callers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


@pytest.mark.parametrize(("mode", "fault"), [("thread", "cut"), ("thread", "blackhole"), ("thread", "refuse"),
                                             ("inline", "cut"), ("inline", "blackhole")])
def test_outage_costs_callers_nothing_and_every_row_is_accounted_for(behind: Behind, mode: str,
                                                                      fault: str) -> None:
    threads_before = threading.active_count()
    server_before = behind.server_connections()
    config = TestingConfig(
        database_url=DatabaseURL(behind.proxied_url), writer_mode=mode, batch_size=50,
        flush_interval=0.02, breaker_threshold=1, breaker_base_delay=0.1, breaker_max_delay=0.5,
        connect_timeout=0.5, io_timeout=0.5)
    writer = TraceWriter.from_config(config, strict=False)
    try:
        with Callers(writer) as callers:
            assert wait_for(lambda: writer.stats().written >= 300, 15), writer.stats()
            callers.phase = "down"  # first: the calls that meet the fault count as "down"
            getattr(behind.proxy, fault)()
            threading.Event().wait(OUTAGE_SECONDS)
            assert writer.stats().breaker in ("open", "half_open"), writer.stats()
            written_down = writer.stats().written
            behind.proxy.restore()
            restored = time.monotonic()
            callers.phase = "back"
            assert wait_for(lambda: writer.stats().written >= written_down + 300, 15), writer.stats()
            resumed_after = time.monotonic() - restored
        assert writer.flush(10)
        stats = writer.stats()
    finally:
        writer.close(5)

    assert callers.errors == []
    assert stats.pending == 0 and stats.written + stats.dropped == stats.submitted
    assert stats.dropped > 0  # the outage lost rows, and every one of them is counted
    stored = behind.count()
    # A batch whose commit reply was lost may be stored: that is what "unconfirmed" counts.
    assert stats.written <= stored <= stats.written + stats.dropped_by_reason.get("unconfirmed", 0)
    up, down = (percentile(callers.timings[p], 0.99) for p in ("up", "down"))
    print(f"\n{mode}/{fault}: calls up/down/back {[len(v) for v in callers.timings.values()]}, "
          f"p99 up {up * 1e6:.0f} us, down {down * 1e6:.0f} us; resumed {resumed_after:.2f} s "
          f"after restore; dropped {dict(stats.dropped_by_reason)}")
    # Generous bound, far from flaky: the breaker costs µs; more than 1% of calls paying the
    # 0.5 s connect timeout would put the p99 at 500 ms.
    assert down < 0.02, (up, down)
    assert resumed_after < 10
    # Nothing left behind: the writer's thread and its connections are gone.
    assert wait_for(lambda: threading.active_count() <= threads_before, 5), threading.enumerate()
    assert wait_for(lambda: behind.proxy.connections == 0, 5)
    assert wait_for(lambda: behind.server_connections() <= server_before, 5)


def test_unreachable_database_from_the_start_costs_callers_nothing(behind: Behind) -> None:
    behind.proxy.refuse()
    config = TestingConfig(database_url=DatabaseURL(behind.proxied_url), flush_interval=0.01,
                           breaker_threshold=1, breaker_base_delay=5, breaker_max_delay=5,
                           connect_timeout=0.5)
    writer = TraceWriter.from_config(config, strict=False)
    try:
        writer.record("x.first")
        assert wait_for(lambda: writer.stats().breaker == "open", 10)
        results = [writer.record("x.more") for _ in range(1000)]
        assert not any(results)
        stats = writer.stats()
        assert stats.dropped_by_reason["circuit_open"] >= 1000
        assert stats.written + stats.dropped == stats.submitted
    finally:
        writer.close(1)
