"""Benchmark of the trace writer against its baselines, in one run, on the local MariaDB.

    .venv/bin/python bench/writer.py [--calls 20000] [--rows 50000] [--batch 500] [--rounds 3]

1. Caller cost of ``TraceWriter.record()`` next to stdlib ``QueueHandler.emit`` on the same
   record (median and p99, microseconds), measured two ways:
   * hand-off only: neither consumer drains during the timed calls, so only the caller's own work
     is timed (queues are drained between rounds);
   * under load: each consumer writes to MariaDB while the caller is timed. The stdlib side's
     consumer is a ``QueueListener`` whose handler batches rows into the same table with
     PyMySQL ``executemany``, i.e. the obvious stdlib-built telemetry writer.
2. Sustained rows/s of the writer (records submitted as fast as one thread can, until
   ``flush()`` returns) next to raw PyMySQL ``executemany`` of the same rows in the same batch
   size, each batch committed.
3. Caller cost of a sampled-out ``record()`` next to a kept one on the same writer (a sampling
   policy with rate 0 for one key; hand-off only), alternating call by call.

Targets (issue 3): caller cost <= 1.0x QueueHandler; throughput >= 0.8x raw; (issue 18) a
sampled-out record() costs its caller no more than a kept one (<= 1.0x). Rounds alternate
between the two sides so machine noise hits both; medians over rounds are reported.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scratch_db import connect, executemany_rate, scratch_database
from trace_service import migrate
from trace_service.config import DatabaseURL, WriterConfig
from trace_service.db import create_engine
from trace_service.writer import TraceWriter

METADATA = {  # ~212 bytes of JSON, a typical trace's metadata
    "target_id": 3, "target_type": "admin", "reason": "password_reset_requested",
    "changes": {"status": ["active", "locked"], "attempts": 5},
    "client": {"platform": "web", "version": "4.12.1"}, "duration_ms": 12.5,
    "tags": ["auth", "stepup"],
}
KW: dict[str, Any] = dict(
    severity="info", actor_admin_id=7, metadata=METADATA, route_name="admins.list",
    request_id="3f2504e0-4f89-41d3-9a0c-0305e82c3301", ip_address="10.0.0.1",
    user_agent="Mozilla/5.0 (bench)",
)
INSERT = (
    "INSERT INTO telemetry_traces (event_key, severity, actor_admin_id, ip_address, user_agent, "
    "route_name, request_id, metadata, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def truncate(database: str) -> None:
    conn = connect(database)
    with conn.cursor() as cur:
        cur.execute("TRUNCATE TABLE telemetry_traces")
    conn.close()


def row_for_stdlib(record: logging.LogRecord) -> tuple[Any, ...]:
    import json

    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
    return (record.msg, "info", 7, "10.0.0.1", "Mozilla/5.0 (bench)", "admins.list",
            "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
            json.dumps(record.metadata, separators=(",", ":")),  # type: ignore[attr-defined]
            f"{stamp}.{int(record.msecs * 1000):06d}")


class BatchingDBHandler(logging.Handler):
    """The stdlib consumer under load: batch rows into MariaDB with executemany."""

    def __init__(self, database: str, batch: int) -> None:
        super().__init__()
        self.conn = connect(database)
        self.batch = batch
        self.rows: list[tuple[Any, ...]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.rows.append(row_for_stdlib(record))
        if len(self.rows) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            with self.conn.cursor() as cur:
                cur.executemany(INSERT, self.rows)
            self.conn.commit()
            self.rows = []


def make_log_record() -> logging.LogRecord:
    record = logging.LogRecord("telemetry", logging.INFO, __file__, 1, "auth.login.attempt",
                               None, None)
    record.metadata = METADATA
    return record


def time_calls(call: Callable[[], Any], n: int) -> list[float]:
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        start = clock()
        call()
        samples.append((clock() - start) / 1000)
    return samples


def caller_cost(url: str, database: str, calls: int, rounds: int, batch: int) -> None:
    print(f"\n1. caller cost, {calls} calls x {rounds} rounds per side (microseconds)")
    for label, under_load in (("hand-off only", False), ("under load", True)):
        ours: list[float] = []
        stdlib: list[float] = []
        for _ in range(rounds):
            # --- ours
            config = WriterConfig(database_url=DatabaseURL(url), queue_size=calls * 2, batch_size=batch,
                            flush_interval=0.05 if under_load else 3600)
            writer = TraceWriter.from_config(config, strict=False)
            if not under_load:
                writer._worker.start = lambda: True  # type: ignore[method-assign]  # no drain while timed
            writer.record("warm.up", **KW)

            # A plain function, as each side's call was timed before (functools.partial merges
            # its stored keywords on every call, which costs both sides differently).
            def record(w: TraceWriter = writer) -> None:
                w.record("auth.login.attempt", **KW)

            ours += time_calls(record, calls)
            if not under_load:
                del writer._worker.start  # the real start() again: the thread drains the queue
                writer._worker.start()
            writer.close(60)
            assert writer.stats().dropped == 0, writer.stats()
            # --- stdlib
            q: queue.Queue[logging.LogRecord] = queue.Queue(-1)
            handler = logging.handlers.QueueHandler(q)
            consumer = BatchingDBHandler(database, batch)
            listener = logging.handlers.QueueListener(q, consumer)
            if under_load:
                listener.start()
            log_record = make_log_record()

            def emit(h: logging.Handler = handler, r: logging.LogRecord = log_record) -> None:
                h.emit(r)

            stdlib += time_calls(emit, calls)
            if not under_load:
                listener.start()
            listener.stop()
            consumer.flush()
            consumer.conn.close()
            truncate(database)
        m_ours, m_std = statistics.median(ours), statistics.median(stdlib)
        p_ours, p_std = pct(ours, 0.99), pct(stdlib, 0.99)
        print(f"  {label:14s} record(): median {m_ours:6.2f}  p99 {p_ours:7.2f} | "
              f"QueueHandler.emit: median {m_std:6.2f}  p99 {p_std:7.2f} | "
              f"ratio median {m_ours / m_std:.2f}x  p99 {p_ours / p_std:.2f}x  (target <= 1.0x)")


def throughput(url: str, database: str, rows: int, rounds: int, batch: int) -> None:
    print(f"\n2. sustained throughput, {rows} rows, batch {batch}, {rounds} rounds per side")
    # The exact rows our writer stores, so both sides insert the same bytes.
    probe = TraceWriter.from_config(WriterConfig(database_url=DatabaseURL(url)), strict=False)
    from trace_service.db import table_layout
    from trace_service.queue import TraceItem
    from trace_service.sink import build_row
    from trace_service.values import TimestampFormatter

    assert probe.engine is not None
    layout = table_layout(probe.engine)
    item = TraceItem("auth.login.attempt", "info", 7, "10.0.0.1", "Mozilla/5.0 (bench)",
                     "admins.list", KW["request_id"], METADATA, time.time_ns())
    row, _ = build_row(item, layout, TimestampFormatter(probe.config.table_timezone))
    probe.close(1)
    raw_rates, our_rates = [], []
    for _ in range(rounds):
        raw_rates.append(executemany_rate(database, INSERT, [row] * rows, batch))
        truncate(database)

        config = WriterConfig(database_url=DatabaseURL(url), queue_size=rows + 1, batch_size=batch,
                        flush_interval=0.05)
        writer = TraceWriter.from_config(config, strict=False)
        writer.record("warm.up", **KW)
        writer.flush(10)
        start = time.perf_counter()
        for _ in range(rows):
            writer.record("auth.login.attempt", **KW)
        writer.flush(600)
        our_rates.append(rows / (time.perf_counter() - start))
        stats = writer.stats()
        writer.close(10)
        assert stats.written == rows + 1 and stats.dropped == 0, stats
        truncate(database)
    raw, ours = statistics.median(raw_rates), statistics.median(our_rates)
    print(f"  raw PyMySQL executemany: {raw:8.0f} rows/s   (rounds: "
          f"{', '.join(f'{r:.0f}' for r in raw_rates)})")
    print(f"  TraceWriter:             {ours:8.0f} rows/s   (rounds: "
          f"{', '.join(f'{r:.0f}' for r in our_rates)})")
    print(f"  ratio {ours / raw:.2f}x  (target >= 0.8x)")


SAMPLING = b"""version = 1
[sampling]
default_rate = 1.0
[[rules]]
match = "auth.sampled.*"
rate = 0.0
"""


def sampled_out_cost(url: str, calls: int, rounds: int, batch: int) -> None:
    print(f"\n3. sampled-out record() next to a kept one, {calls} calls x {rounds} rounds "
          "(microseconds, hand-off only)")
    with tempfile.NamedTemporaryFile(suffix=".toml") as policy:
        policy.write(SAMPLING)
        policy.flush()
        kept: list[float] = []
        dropped: list[float] = []
        for _ in range(rounds):
            config = WriterConfig(database_url=DatabaseURL(url), queue_size=calls * 2,
                                  batch_size=batch, flush_interval=3600,
                                  sampling_policy=policy.name)
            writer = TraceWriter.from_config(config, strict=False)
            writer._worker.start = lambda: True  # type: ignore[method-assign]  # no drain while timed
            writer.record("warm.up", **KW)
            clock = time.perf_counter_ns
            for _ in range(calls):  # interleaved, so machine noise hits both alike
                start = clock()
                writer.record("auth.login.attempt", **KW)
                middle = clock()
                writer.record("auth.sampled.attempt", **KW)
                end = clock()
                kept.append((middle - start) / 1000)
                dropped.append((end - middle) / 1000)
            stats = writer.stats()
            assert stats.discarded_by_reason["sampled_out"] == calls, stats
            del writer._worker.start
            writer._worker.start()
            writer.close(60)
    m_kept, m_out = statistics.median(kept), statistics.median(dropped)
    p_kept, p_out = pct(kept, 0.99), pct(dropped, 0.99)
    print(f"  kept: median {m_kept:6.2f}  p99 {p_kept:7.2f} | sampled out: median {m_out:6.2f}  "
          f"p99 {p_out:7.2f} | ratio median {m_out / m_kept:.2f}x  p99 {p_out / p_kept:.2f}x  "
          "(target <= 1.0x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch_database() as (url, database):
        engine = create_engine(url)
        migrate.upgrade(engine)
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT VERSION()").scalar()
        engine.dispose()
        print(f"Python {sys.version.split()[0]}, MariaDB {version}, {os.cpu_count()} CPUs; "
              f"database {database}")
        caller_cost(url, database, args.calls, args.rounds, args.batch)
        throughput(url, database, args.rows, args.rounds, args.batch)
        sampled_out_cost(url, args.calls, args.rounds, args.batch)


if __name__ == "__main__":
    main()
