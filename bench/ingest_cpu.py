"""Where a single-trace request's machine time goes: CPU per request of ours and of the bare handler.

    .venv/bin/python bench/ingest_cpu.py [--duration 10] [--rounds 2] [--workers 2]

A diagnostic next to ``bench/ingest.py`` (same apps, same gunicorn settings, same wrk load): for
each run it reads the CPU time (user and system, from ``/proc/<pid>/stat``) that the gunicorn
workers and ``mariadbd`` spent during the wrk run, divided by the requests served, for the bare
Flask handler and for ours side by side, with the ratio of their worker CPU. It shows whether the
gap in requests/s is the workers' Python, the database, or the kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import TRACE, prepare_service, settle, start, wrk
from bench.scratch_db import scratch_database

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: str) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def pids(*command: str) -> list[str]:
    return subprocess.run(command, capture_output=True, text=True).stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with scratch_database() as (url, _name):
        engine, env, headers = prepare_service(url)
        contenders = [("bare", "bench.bare_app:app"), ("ours", "trace_service.http.app:create_app()")]
        print(f"gunicorn -w {args.workers} sync, wrk -t2 -c32 -d{args.duration}s; microseconds of "
              "CPU per request")
        for _round in range(args.rounds):
            worker_cpu: dict[str, float] = {}
            for name, app in contenders:
                process, port = start(app, env, ["-w", str(args.workers)])
                workers = pids("pgrep", "-P", str(process.pid))
                database = pids("pgrep", "-x", "mariadbd")
                before = {pid: cpu_seconds(pid) for pid in workers + database}
                result = wrk(port, json.dumps(TRACE), headers, args.duration, 32)
                after = {pid: cpu_seconds(pid) for pid in before}
                per_request = 1e6 / result["requests"]
                user = sum(after[p][0] - before[p][0] for p in workers) * per_request
                system = sum(after[p][1] - before[p][1] for p in workers) * per_request
                db = sum(sum(after[p]) - sum(before[p]) for p in database) * per_request
                worker_cpu[name] = user + system
                print(f"  {name:4s} {result['rps']:6.0f} req/s  workers {user + system:5.0f} "
                      f"(user {user:4.0f}, system {system:3.0f})  mariadbd {db:4.0f}")
                process.send_signal(signal.SIGTERM)
                process.wait(90)
                settle(engine)
            print(f"  worker CPU per request, bare / ours: {worker_cpu['bare'] / worker_cpu['ours']:.2f}x")
        engine.dispose()


if __name__ == "__main__":
    main()
