"""A process that records traces at its writer's full rate, for the jobs-under-load test.

    python -m tests.support.writer_load URL SECONDS

Records for SECONDS, or until a line arrives on standard input, whichever comes first (a
bounded queue, so the writer runs flat out and the surplus is dropped as ``queue_full``), then
closes the writer and prints its final stats as one JSON line, with
``rate``: rows written per second.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from trace_service.config import DatabaseURL, WriterConfig
from trace_service.writer import TraceWriter


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    writer = TraceWriter.from_config(WriterConfig(database_url=DatabaseURL(url), batch_size=500,
                                            queue_size=20_000, flush_interval=0.01, shutdown_timeout=10))
    stop = threading.Event()
    # A line (or EOF) on stdin ends the load early: the test stops it when its own work is done.
    def stop_on_stdin() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=stop_on_stdin, daemon=True).start()
    print(json.dumps({"event": "started"}), flush=True)
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline and not stop.is_set():
        for _ in range(200):
            writer.record("new.row", metadata={"load": True})
    writer.close()
    stats = writer.stats().as_dict()
    print(json.dumps({"event": "final", "rate": stats["written"] / (time.monotonic() - started), **stats}),
          flush=True)


if __name__ == "__main__":
    main()
