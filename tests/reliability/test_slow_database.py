"""The database gets slow (latency on every packet): the queue fills, callers are not slowed.

Promise: a slow database never slows a caller; what the writer cannot keep up with is dropped
at the queue and counted as ``queue_full``, and the accounting stays exact.
"""

from __future__ import annotations

import threading

import pytest

from tests.reliability.conftest import Behind, percentile, wait_for
from tests.reliability.test_outage import Callers
from trace_service.config import DatabaseURL
from trace_service.http.config import TestingConfig
from trace_service.writer import TraceWriter

pytestmark = pytest.mark.timeout(120)
LATENCY = 0.05  # seconds added to every chunk each way: a round trip of 100 ms or more
SLOW_SECONDS = 3.0


def test_a_slow_database_fills_the_queue_not_the_callers(behind: Behind) -> None:
    config = TestingConfig(database_url=DatabaseURL(behind.proxied_url), queue_size=500, batch_size=50,
                           flush_interval=0.02, io_timeout=5, connect_timeout=5)
    writer = TraceWriter.from_config(config, strict=False)
    try:
        with Callers(writer) as callers:
            assert wait_for(lambda: writer.stats().written >= 300, 15), writer.stats()
            callers.phase = "down"  # first: the calls that meet the fault count as "down"
            behind.proxy.delay(LATENCY)
            threading.Event().wait(SLOW_SECONDS)
            during = writer.stats()
            behind.proxy.restore()
            callers.phase = "back"
            assert wait_for(lambda: writer.stats().written >= during.written + 300, 15)
        assert writer.flush(15)
        stats = writer.stats()
    finally:
        writer.close(5)

    assert callers.errors == []
    assert during.dropped_by_reason["queue_full"] > 0, during
    assert during.breaker == "closed"  # slow is not down: nothing else was dropped for it
    assert stats.pending == 0 and stats.written + stats.dropped == stats.submitted
    assert stats.dropped == stats.dropped_by_reason["queue_full"]
    assert behind.count() == stats.written
    up, slow = (percentile(callers.timings[p], 0.99) for p in ("up", "down"))
    print(f"\nslow db (+{LATENCY * 1000:.0f} ms a packet each way): calls {len(callers.timings['down'])}, "
          f"p99 up {up * 1e6:.0f} us, slow {slow * 1e6:.0f} us; queue_full "
          f"{stats.dropped_by_reason['queue_full']}, written {stats.written}")
    assert slow < max(10 * up, 0.02), (up, slow)
