"""A host process with a trace writer, for the process-death tests.

    python -m tests.support.writer_child URL COUNT QUEUE_SIZE

Records COUNT traces as fast as it can (``metadata.i`` numbers them), prints one JSON line
``{"event": "submitted", ...stats}`` and then idles until it is signalled. Like most host apps
(and gunicorn's workers) it turns SIGTERM into a normal exit, so the writer's exit hook flushes;
the library itself never takes over signals. After that flush it prints ``{"event": "final", ...}``.
"""

from __future__ import annotations

import atexit
import json
import signal
import sys
import threading

from trace_service.config import DatabaseURL, WriterConfig
from trace_service.writer import TraceWriter


def say(event: str, writer: TraceWriter) -> None:
    print(json.dumps({"event": event, **writer.stats().as_dict()}), flush=True)


def main() -> None:
    url, count, queue_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    holder: list[TraceWriter] = []
    # Registered before the writer exists, so it runs after the writer's own exit hook (LIFO).
    def say_final() -> None:
        if holder:
            say("final", holder[0])

    atexit.register(say_final)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    writer = TraceWriter.from_config(WriterConfig(database_url=DatabaseURL(url), queue_size=queue_size,
                                            batch_size=100, flush_interval=0.01, shutdown_timeout=5))
    holder.append(writer)
    for i in range(count):
        writer.record("reliability.child", metadata={"i": i})
    say("submitted", writer)
    threading.Event().wait()


if __name__ == "__main__":
    main()
