"""Benchmark of HTTP ingest under gunicorn against a bare Flask handler, in one run.

    .venv/bin/python bench/ingest.py [--duration 10] [--connections 32] [--rounds 3] [--queue redis]
                                     [--workers 2] [--worker-class sync|gthread|gevent --threads N]
                                     [--stream-worker-class gevent|sync|gthread] [--through-flask]

Each contender runs ``--rounds`` times, taking turns with the others; figures are medians over
the rounds, and the single-trace ratio is also printed round by round (median and spread).
Both apps run under gunicorn with the same settings (``-c gunicorn.conf.py -w 2``, sync workers
unless ``--workers`` or ``--worker-class gthread`` say otherwise) on 127.0.0.1;
the load comes from ``wrk`` (Debian package) in a second process. Printed side by side:
single-trace posts (requests/s, p50 and p99 latency) and batches of 500 traces (rows/s), with
the ratio ours/bare and any non-2xx answers. Ours authenticates, validates, masks and writes to
MariaDB (the rows are counted after a graceful stop); the bare handler only parses the JSON.
Ours answers its POST in front of Flask's request cycle (``trace_service.http.ingest_route``),
which the bare handler goes through; ``--through-flask`` sends ours through Flask too.
Target (issue 6): single-trace requests/s >= 0.7x the bare handler.

``--queue redis`` adds a third contender in the same run: ours on the durable path
(``TRACE_QUEUE_URL``, a redis-server of its own with ``appendfsync everysec`` in a temporary
directory), where a request is answered once Redis holds its masked traces; the ratio printed is
stream / in-process. Target (issue 17): >= 0.9x the in-process path's requests/s. Each path runs
on the worker class ``gunicorn.conf.py`` deploys it with: the in-process path on ``--worker-class``
(sync), the durable one on ``--stream-worker-class`` (gevent: its requests wait for Redis);
``--stream-worker-class sync`` compares the two on the same class.

``--otlp`` adds, in the same run and under the same gunicorn, OTLP/HTTP: protobuf batches of 500
log records carrying the same 500 traces (the event key as the record's event name, the fields
as attributes) posted to ``/v1/logs`` with the same 4 connections, rows/s printed next to our JSON
batches with the ratio OTLP / JSON. Each request's records are made distinct (a counter in the
resource, spliced into the body per request by wrk's Lua), so their derived ``event_id`` values
are new and every row is inserted, not skipped as a retry's duplicate; the ids are claimed in
``trace_ingest_events`` as the receiver always does, which the JSON batches (no ``event_id``) skip.
With ``--otlp`` both batch runs start once the writers have written the run before (the table
stops growing), so neither shares the CPUs with the other's backlog.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest  # noqa: E402
from opentelemetry.proto.common.v1.common_pb2 import (  # noqa: E402
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import (  # noqa: E402
    SEVERITY_NUMBER_INFO,
    LogRecord,
    ResourceLogs,
    ScopeLogs,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource  # noqa: E402

from bench.scratch_db import scratch_database  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from trace_service import migrate  # noqa: E402
from trace_service.db import create_engine  # noqa: E402
from trace_service.http.keys import KeyStore  # noqa: E402

TRACE = {"event_key": "auth.login.attempt", "severity": "info", "actor_admin_id": 7,
         "route_name": "admins.list",
         "metadata": {"target_id": 3, "reason": "password_reset_requested",
                      "client": {"platform": "web", "version": "4.12.1"}, "tags": ["auth", "stepup"]}}

# Replaced in every request by wrk's Lua (a thread number and a counter, as many characters).
BATCH_MARK = b"BENCH-BATCH-MARK"


def _any(value: object) -> AnyValue:
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=_any(v))
                                                          for k, v in value.items()]))
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_any(v) for v in value]))
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=str(value))


def otlp_batch(count: int) -> tuple[bytes, bytes]:
    """An ExportLogsServiceRequest of ``count`` records holding TRACE, as protobuf, split around
    BATCH_MARK (a resource attribute): wrk puts a per-request value there."""
    fields = {"actor_admin_id": TRACE["actor_admin_id"], "route_name": TRACE["route_name"],
              **TRACE["metadata"]}  # type: ignore[dict-item]
    attributes = [KeyValue(key=key, value=_any(value)) for key, value in fields.items()]
    start = time.time_ns()
    records = [LogRecord(time_unix_nano=start + n * 1000, severity_number=SEVERITY_NUMBER_INFO,
                         severity_text="INFO",
                         event_name=str(TRACE["event_key"]), attributes=attributes) for n in range(count)]
    resource = Resource(attributes=[KeyValue(key="service.name", value=_any("php-admin")),
                                    KeyValue(key="bench.batch", value=_any(BATCH_MARK.decode()))])
    body = ExportLogsServiceRequest(resource_logs=[ResourceLogs(resource=resource, scope_logs=[
        ScopeLogs(scope=InstrumentationScope(name="bench"), log_records=records)])]).SerializeToString()
    prefix, mark, suffix = body.partition(BATCH_MARK)
    assert mark and BATCH_MARK not in suffix
    return prefix, suffix


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(app: str, env: dict[str, str], worker: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        # --graceful-timeout above TRACE_SHUTDOWN_TIMEOUT: gunicorn.conf.py's 10 s would SIGKILL a
        # worker still flushing a full queue (100k traces here), and the rows stored after the
        # stop would fall short of what was answered 202 for a reason that is the bench's own.
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), *worker,
         "--graceful-timeout", "75", "-b", f"127.0.0.1:{port}", app],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(150):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/telemetry/traces", timeout=1)
        except urllib.error.HTTPError:
            return process, port  # it answers (405 for GET)
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{app} did not start")


# Each request's body: the prefix, this thread's number and its request count (16 characters, as
# many as BATCH_MARK), the suffix. wrk gives each thread its own Lua state, numbered in setup().
_SPLICE = """
local function slurp(path)
  local f = assert(io.open(path, "rb")); local s = f:read("*a"); f:close(); return s
end
local prefix, suffix = slurp(%s), slurp(%s)
local threads, sent = 0, 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function request()
  sent = sent + 1
  return wrk.format(nil, nil, nil, prefix .. string.format("%%04d%%012d", tid or 0, sent) .. suffix)
end
"""


def wrk(port: int, body: str | tuple[bytes, bytes], headers: dict[str, str], duration: int,
        connections: int, path: str = "/api/telemetry/traces") -> dict[str, float]:
    """wrk's figures for POSTs of ``body`` (or, for a (prefix, suffix) pair, of bodies made
    distinct per request) to ``path``."""
    lua = "wrk.method = 'POST'\n" + "".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())
    parts: list[str] = []
    if isinstance(body, str):
        lua += "wrk.body = " + json.dumps(body) + "\n"
    else:
        for part in body:
            with tempfile.NamedTemporaryFile("wb", suffix=".bin", delete=False) as data:
                data.write(part)
            parts.append(data.name)
        lua += _SPLICE % (json.dumps(parts[0]), json.dumps(parts[1]))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True).stdout
    for name in (script.name, *parts):
        os.unlink(name)

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50": ms("50%"), "p99": ms("99%"),
            "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
            "requests": float(total.group(1)) if total else 0.0}


def prepare_service(url: str) -> tuple[sa.Engine, dict[str, str], dict[str, str]]:
    """The scratch database migrated, an ingest key in it, and the environment and request
    headers both apps run with (rate limits out of the way, a queue that holds a run's backlog)."""
    engine = create_engine(url)
    migrate.upgrade(engine)
    _, key = KeyStore(engine).create("bench", ["ingest"])
    env = {"TRACE_DATABASE_URL": url, "TRACE_INGEST_RATE": "100000000/minute",
           "TRACE_QUEUE_SIZE": "100000", "TRACE_SHUTDOWN_TIMEOUT": "60"}
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return engine, env, headers


def settle(engine: sa.Engine, timeout: float = 120.0) -> None:
    """Wait until the table stops growing: the writers have written what the last run queued,
    so that the next run does not share the CPUs with that backlog."""
    last, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            count = conn.execute(sa.text("SELECT COUNT(*) FROM telemetry_traces")).scalar_one()
        if count == last:
            return
        last = count
        time.sleep(1.0)


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure of wrk's runs, the median over the runs."""
    return {key: statistics.median([run[key] for run in runs]) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    # 2 by default, as every figure before 2026-12-04 was taken; gunicorn.conf.py's own default
    # is two per CPU (4 here), which lets a worker run while another waits on Redis.
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per app")
    # gunicorn.conf.py's sync workers by default; gthread keeps connections alive between
    # requests (sync closes each one), at the cost of a thread hand-off per request.
    parser.add_argument("--worker-class", choices=["sync", "gthread", "gevent"], default="sync")
    # gunicorn.conf.py runs the durable path on gevent workers; sync measures like for like.
    parser.add_argument("--stream-worker-class", choices=["sync", "gthread", "gevent"],
                        default="gevent", help="the durable path's worker class (--queue redis)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per gunicorn worker (gthread)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs per contender, taking turns; medians are printed")
    parser.add_argument("--queue", choices=["redis"], default=None,
                        help="also run ours on the durable path, through a Redis stream")
    # Ours answers its POST in front of Flask's request cycle (trace_service.http.ingest_route);
    # this runs it through Flask, as before 2026-12-04's evening, to measure what the route saves.
    parser.add_argument("--through-flask", action="store_true",
                        help="ours with TRACE_INGEST_FAST_ROUTE=false")
    parser.add_argument("--otlp", action="store_true",
                        help="also post OTLP/HTTP protobuf batches of 500 log records to ours")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    with scratch_database() as (url, _name):
        engine, env, headers = prepare_service(url)
        single, batch = json.dumps(TRACE), json.dumps([TRACE] * 500)
        def gunicorn_args(worker_class: str) -> list[str]:
            return ["-w", str(args.workers), "-k", worker_class, "--threads", str(args.threads)]

        worker, stream_worker = gunicorn_args(args.worker_class), gunicorn_args(args.stream_worker_class)
        print(f"gunicorn -w {args.workers} -k {args.worker_class} --threads {args.threads}"
              f"{f' (stream: -k {args.stream_worker_class})' if args.queue else ''}, "
              f"wrk -t2 -c{args.connections} -d{args.duration}s on 127.0.0.1; "
              f"{os.cpu_count()} CPUs")
        runs: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {}
        otlp_runs: list[dict[str, float]] = []
        ours = "trace_service.http.app:create_app()"
        ours_env = {**env, "TRACE_INGEST_FAST_ROUTE": "false"} if args.through_flask else env
        contenders = [("bare", "bench.bare_app:app", env), ("ours", ours, ours_env)]
        redis_dir = tempfile.TemporaryDirectory()
        redis_server = None
        if args.queue:
            redis_server = RedisServer(Path(redis_dir.name), appendfsync="everysec").start()
            contenders.append(("stream", ours, {
                **ours_env, "TRACE_QUEUE_URL": redis_server.url, "TRACE_QUEUE_MAX_LENGTH": "100000000"}))
        try:
            # Rounds take turns (bare, ours, [stream], bare, ...), so that the machine's noise
            # hits every contender alike; each figure is the median over the rounds.
            for _round in range(args.rounds):
                for name, app, app_env in contenders:
                    process, port = start(app, app_env, stream_worker if name == "stream" else worker)
                    first = wrk(port, single, headers, args.duration, args.connections)
                    if args.otlp and name == "ours":
                        settle(engine)  # both batch runs start with the writers idle
                    runs.setdefault(name, []).append(
                        (first, wrk(port, batch, headers, args.duration, 4)))
                    if args.otlp and name == "ours":
                        settle(engine)
                        otlp_runs.append(wrk(port, otlp_batch(500),
                                             {**headers, "Content-Type": "application/x-protobuf"},
                                             args.duration, 4, "/v1/logs"))
                    process.send_signal(signal.SIGTERM)
                    process.wait(90)
                    settle(engine)  # the next contender does not share the CPUs with a backlog
        finally:
            if redis_server is not None:
                queued = redis_server.client().xlen("telemetry:traces")
                redis_server.stop()
            redis_dir.cleanup()
        results = {name: (_median_run([single for single, _ in pairs]),
                          _median_run([batch for _, batch in pairs])) for name, pairs in runs.items()}
        otlp = _median_run(otlp_runs) if otlp_runs else {}
        ratios = [o[0]["rps"] / b[0]["rps"] for b, o in zip(runs["bare"], runs["ours"], strict=True)]
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT COUNT(*) FROM telemetry_traces")).scalar_one()
        engine.dispose()
        (bs, bb), (os_, ob) = results["bare"], results["ours"]
        print(f"\n  single trace   bare: {bs['rps']:7.0f} req/s  p50 {bs['p50']:6.2f} ms  "
              f"p99 {bs['p99']:6.2f} ms"
              f"\n                 ours: {os_['rps']:7.0f} req/s  p50 {os_['p50']:6.2f} ms  "
              f"p99 {os_['p99']:6.2f} ms  non-2xx {os_['non2xx']:.0f}"
              f"\n                 ratio {os_['rps'] / bs['rps']:.2f}x of the medians; per round "
              f"{', '.join(f'{r:.2f}x' for r in ratios)}: median {statistics.median(ratios):.2f}x "
              f"(spread {min(ratios):.2f}-{max(ratios):.2f}x; target >= 0.7x)")
        ours_rows = (ob["requests"] - ob["non2xx"]) * 500 / args.duration
        print(f"\n  batch of 500   bare: {bb['rps'] * 500:7.0f} rows/s  p50 {bb['p50']:6.2f} ms"
              f"\n                 ours: {ours_rows:7.0f} rows/s accepted  p50 {ob['p50']:6.2f} ms"
              f"  ({ob['non2xx']:.0f} of {ob['requests']:.0f} answered 503: the writer's queue was full)"
              f"\n                 ratio {ours_rows / (bb['rps'] * 500):.2f}x")
        counted = sum(single["requests"] - single["non2xx"] + (batch["requests"] - batch["non2xx"]) * 500
                      for single, batch in runs["ours"])
        if args.otlp:
            otlp_rows = (otlp["requests"] - otlp["non2xx"]) * 500 / args.duration
            counted += sum((run["requests"] - run["non2xx"]) * 500 for run in otlp_runs)
            print(f"\n  OTLP/HTTP, protobuf batches of 500 log records to /v1/logs (the same traces)"
                  f"\n           JSON: {ours_rows:7.0f} rows/s accepted  p50 {ob['p50']:6.2f} ms  (above)"
                  f"\n           OTLP: {otlp_rows:7.0f} rows/s accepted  p50 {otlp['p50']:6.2f} ms"
                  f"  ({otlp['non2xx']:.0f} of {otlp['requests']:.0f} not 200)"
                  f"\n                 ratio OTLP / JSON {otlp_rows / max(ours_rows, 1):.2f}x"
                  "  (OTLP's rows also claim their derived event_id; the JSON batches carry none)")
        print(f"\n  rows stored after a graceful stop: {stored}; wrk counted {counted:.0f} accepted "
              "(requests still in flight when wrk stops are served but not counted by wrk)")
        if "stream" in results:
            ss, sb = results["stream"]
            stream_rows = (sb["requests"] - sb["non2xx"]) * 500 / args.duration
            # Round by round too: a round's contenders ran minutes apart, not days.
            durable = [s[0]["rps"] / o[0]["rps"]
                       for o, s in zip(runs["ours"], runs["stream"], strict=True)]
            print(f"\n  durable path (Redis stream, AOF everysec, -k {args.stream_worker_class}; "
                  "nothing consumed during the run)"
                  f"\n  single trace stream: {ss['rps']:7.0f} req/s  p50 {ss['p50']:6.2f} ms  "
                  f"p99 {ss['p99']:6.2f} ms  non-2xx {ss['non2xx']:.0f}"
                  f"\n                 ratio stream / in-process {ss['rps'] / os_['rps']:.2f}x of the "
                  f"medians; per round {', '.join(f'{r:.2f}x' for r in durable)}: median "
                  f"{statistics.median(durable):.2f}x (spread {min(durable):.2f}-{max(durable):.2f}x; "
                  f"target >= 0.9x); stream / bare {ss['rps'] / bs['rps']:.2f}x"
                  f"\n  batch of 500   stream: {stream_rows:7.0f} rows/s accepted  p50 {sb['p50']:6.2f} ms"
                  f"\n                 ratio stream / in-process {stream_rows / max(ours_rows, 1):.2f}x"
                  f"\n  entries in the stream after the run: {queued}")


if __name__ == "__main__":
    main()
