"""Where a single-trace request's machine time goes: CPU per request of ours and of the bare handler.

    .venv/bin/python bench/ingest_cpu.py [--duration 10] [--rounds 2] [--workers 2] [--queue redis]
                                         [--stream-worker-class gevent|sync]

A diagnostic next to ``bench/ingest.py`` (same apps, same gunicorn settings, same wrk load): for
each run it reads the CPU time (user and system, from ``/proc/<pid>/stat``) that the gunicorn
workers and ``mariadbd`` spent during the wrk run, divided by the requests served, for the bare
Flask handler and for ours side by side, with the ratio of their worker CPU. It shows whether the
gap in requests/s is the workers' Python, the database, or the kernel.

``--queue redis`` adds ours on the durable path (a redis-server of its own, ``appendfsync
everysec``, as ``bench/ingest.py --queue redis`` runs it), with the CPU ``redis-server`` spent per
request and, for every contender, the CPU time the machine left idle per request (from
``/proc/stat``: a sync worker waiting on Redis holds its request while a core may idle). It
shows where the durable path's requests/s go: the workers' own round trip, Redis's work on the
same cores, or the wait. The durable path runs on gevent workers, as ``gunicorn.conf.py`` deploys
it (``--stream-worker-class sync`` for the same class as the others).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import TRACE, prepare_service, settle, start, wrk
from bench.scratch_db import scratch_database
from tests.support.redis_server import RedisServer

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: str) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def idle_seconds() -> float:
    """CPU seconds all cores spent idle (or waiting on I/O) since boot."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()[1:]
    return (int(fields[3]) + int(fields[4])) / TICKS


def pids(*command: str) -> list[str]:
    return subprocess.run(command, capture_output=True, text=True).stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--queue", choices=["redis"], default=None,
                        help="also ours on the durable path, through a Redis stream")
    parser.add_argument("--stream-worker-class", choices=["gevent", "sync"], default="gevent",
                        help="the durable path's worker class (gunicorn.conf.py's: gevent)")
    args = parser.parse_args()
    with scratch_database() as (url, _name), tempfile.TemporaryDirectory() as directory:
        engine, env, headers = prepare_service(url)
        ours = "trace_service.http.app:create_app()"
        contenders = [("bare", "bench.bare_app:app", env), ("ours", ours, env)]
        redis_server = None
        if args.queue:
            redis_server = RedisServer(Path(directory), appendfsync="everysec").start()
            contenders.append(("stream", ours, {**env, "TRACE_QUEUE_URL": redis_server.url,
                                                "TRACE_QUEUE_MAX_LENGTH": "100000000"}))
        print(f"gunicorn -w {args.workers} sync (stream: {args.stream_worker_class}), "
              f"wrk -t2 -c32 -d{args.duration}s; microseconds of CPU per request")
        try:
            for _round in range(args.rounds):
                worker_cpu: dict[str, float] = {}
                for name, app, app_env in contenders:
                    worker_class = args.stream_worker_class if name == "stream" else "sync"
                    process, port = start(app, app_env, ["-w", str(args.workers), "-k", worker_class])
                    workers = pids("pgrep", "-P", str(process.pid))
                    database = pids("pgrep", "-x", "mariadbd")
                    broker = [str(redis_server.process.pid)] if redis_server and redis_server.process else []
                    before = {pid: cpu_seconds(pid) for pid in workers + database + broker}
                    idle = idle_seconds()
                    result = wrk(port, json.dumps(TRACE), headers, args.duration, 32)
                    idle = idle_seconds() - idle
                    after = {pid: cpu_seconds(pid) for pid in before}
                    per_request = 1e6 / result["requests"]
                    user = sum(after[p][0] - before[p][0] for p in workers) * per_request
                    system = sum(after[p][1] - before[p][1] for p in workers) * per_request
                    db = sum(sum(after[p]) - sum(before[p]) for p in database) * per_request
                    redis_cpu = sum(sum(after[p]) - sum(before[p]) for p in broker) * per_request
                    worker_cpu[name] = user + system
                    print(f"  {name:6s} {result['rps']:6.0f} req/s  workers {user + system:5.0f} "
                          f"(user {user:4.0f}, system {system:3.0f})  mariadbd {db:4.0f}"
                          + (f"  redis-server {redis_cpu:4.0f}" if broker else "")
                          + f"  idle {idle * per_request:4.0f}")
                    process.send_signal(signal.SIGTERM)
                    process.wait(90)
                    settle(engine)
                print(f"  worker CPU per request, bare / ours: {worker_cpu['bare'] / worker_cpu['ours']:.2f}x"
                      + (f"; in-process / stream {worker_cpu['ours'] / worker_cpu['stream']:.2f}x"
                         if "stream" in worker_cpu else ""))
        finally:
            if redis_server is not None:
                redis_server.stop()
        engine.dispose()


if __name__ == "__main__":
    main()
