"""The durable ingest path end to end, under load from a second process: real gunicorn, a real
redis-server of the test's own (AOF in a temporary directory), consumer processes
(`flask queue consume`), and MariaDB behind a fault-injecting proxy.

Promise: **every trace answered 202 is stored exactly once**, whatever is killed with SIGKILL on
the way (a gunicorn worker, a consumer, redis-server itself, restarted on its files) and while
the database is cut for a while; what was answered 503 or never answered is not required.
The exact moment between a consumer's commit and its acknowledgement is also taken on its own,
deterministically, in tests/queue/test_durable_ingest.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.reliability.conftest import Behind
from tests.support.gunicorn import ROOT, free_port, start_gunicorn, stop_gunicorn
from tests.support.redis_server import RedisServer
from trace_service.http.keys import KeyStore

pytestmark = pytest.mark.timeout(240)
STREAM = "reliability:traces"


def queue_env(redis_server: RedisServer, **extra: str) -> dict[str, str]:
    return {"TRACE_QUEUE_URL": redis_server.url, "TRACE_QUEUE_STREAM": STREAM,
            "TRACE_QUEUE_CLAIM_SECONDS": "2", "TRACE_CONNECT_TIMEOUT": "0.5", "TRACE_IO_TIMEOUT": "2",
            "TRACE_BREAKER_THRESHOLD": "1", "TRACE_BREAKER_BASE_DELAY": "0.2",
            "TRACE_BREAKER_MAX_DELAY": "1", "TRACE_KEY_CACHE_SECONDS": "300",
            "TRACE_INGEST_RATE": "1000000/minute", "TRACE_BATCH_SIZE": "100", **extra}


class Consumers:
    """`flask queue consume` processes, each logging to a file of its own."""

    def __init__(self, database_url: str, env: dict[str, str], logs: Path) -> None:
        self.env = {**os.environ, "TRACE_DATABASE_URL": database_url, **env}
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        with (self.logs / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            self.processes[name] = subprocess.Popen(
                [str(Path(sys.executable).with_name("flask")), "--app", "trace_service", "queue",
                 "consume", "--name", name], cwd=ROOT, env=self.env, stdout=log, stderr=log)

    def kill(self, name: str) -> None:
        os.kill(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(10)

    def stop_all(self) -> dict[str, int]:
        """SIGTERM each (it finishes its batch and exits 0); exit codes by name."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        return {name: process.wait(30) for name, process in self.processes.items()}


def drained(redis_server: RedisServer, timeout: float) -> bool:
    """The stream is empty and nothing is pending (every entry stored and acknowledged)."""
    client = redis_server.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.xlen(STREAM) == 0 and int(client.xpending(STREAM, "telemetry-writers")["pending"]) == 0:
                return True
        except Exception:  # the group may not exist yet, or Redis is restarting
            pass
        time.sleep(0.2)
    return False


def stored_ns(behind: Behind) -> Counter[str]:
    with behind.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT metadata FROM telemetry_traces "
                                    "WHERE event_key = 'reliability.load'")).scalars()
        return Counter(json.loads(metadata)["n"] for metadata in rows)


def load(port: int, key: str, seconds: float, threads: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.support.load_client", str(port), key,
                             str(seconds), str(threads), str(out)], cwd=ROOT)


def workers_of(master: subprocess.Popen[bytes]) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True,
                           check=False)
    return [int(pid) for pid in found.stdout.split()]


def test_every_202_is_stored_exactly_once_through_sigkills_and_a_database_cut(
        behind: Behind, redis_server: RedisServer, tmp_path: Path) -> None:
    _, key = KeyStore(behind.engine).create("load", ["ingest"])
    env = queue_env(redis_server)
    port = free_port()
    server = start_gunicorn(behind.proxied_url, port, env=env)
    consumers = Consumers(behind.proxied_url, env, tmp_path)
    consumers.start("a")
    consumers.start("b")
    out = tmp_path / "load.json"
    pause = threading.Event()
    events: list[str] = []
    try:
        client = load(port, key, 10.0, 6, out)
        pause.wait(1.5)
        worker = workers_of(server)[0]
        os.kill(worker, signal.SIGKILL)
        events.append(f"gunicorn worker {worker} killed")
        pause.wait(1.0)
        consumers.kill("a")
        consumers.start("a2")  # a new process; "a"'s pending entries are claimed after 2 s
        events.append("consumer a killed")
        pause.wait(1.5)
        redis_server.kill()
        events.append("redis-server killed")
        pause.wait(1.0)
        redis_server.start()  # the same port and append-only file
        events.append("redis-server restarted")
        pause.wait(1.0)
        behind.proxy.cut()
        pause.wait(2.0)
        behind.proxy.restore()
        events.append("database cut for 2 s")
        assert client.wait(60) == 0
        assert drained(redis_server, 90), "the stream did not drain"
    finally:
        exits = consumers.stop_all()
        stop_gunicorn(server)

    result: dict[str, Any] = json.loads(out.read_text())
    accepted = set(result["accepted"])
    stored = stored_ns(behind)
    twice = {n: count for n, count in stored.items() if count > 1}
    print(f"\ndurable queue under kills: {events}; answers {result['statuses']}, problems "
          f"{result['problems']}, accepted {len(accepted)}, stored {sum(stored.values())}, "
          f"accepted but not stored {len(accepted - set(stored))}, stored twice {len(twice)}, "
          f"consumer exits {exits}")
    assert accepted and not twice
    assert accepted <= set(stored)  # every 202 stored
    assert set(result["statuses"]) <= {"202", "503"}
    assert exits["b"] == 0 and exits["a2"] == 0  # SIGTERM: the batch in hand, then exit 0
    assert redis_server.client().xlen(STREAM + ":dead") == 0


def test_two_hosts_and_two_consumers_share_the_stream_and_the_rate_limit(
        behind: Behind, redis_server: RedisServer, tmp_path: Path) -> None:
    _, key = KeyStore(behind.engine).create("load", ["ingest"])
    rate = 40
    env = queue_env(redis_server, TRACE_INGEST_RATE=f"{rate}/second",
                    TRACE_RATELIMIT_STORAGE=redis_server.url.replace("/0", "/1"))
    ports = [free_port(), free_port()]
    servers = [start_gunicorn(behind.url, port, env=env) for port in ports]
    consumers = Consumers(behind.url, env, tmp_path)
    consumers.start("host1")
    consumers.start("host2")
    outs = [tmp_path / f"load{i}.json" for i in range(2)]
    seconds = 4.0
    try:
        started = time.monotonic()
        clients = [load(port, key, seconds, 4, out) for port, out in zip(ports, outs, strict=True)]
        assert all(c.wait(60) == 0 for c in clients)
        elapsed = time.monotonic() - started
        assert drained(redis_server, 60)
    finally:
        exits = consumers.stop_all()
        for server in servers:
            stop_gunicorn(server)
    results = [json.loads(out.read_text()) for out in outs]
    accepted = [n for result in results for n in result["accepted"]]
    stored = stored_ns(behind)
    windows = int(elapsed) + 2  # fixed one-second windows the load touched, at most
    print(f"\ntwo hosts: answers {[r['statuses'] for r in results]}, accepted {len(accepted)} "
          f"(at most {rate} a second over both: {rate * windows}), stored {sum(stored.values())}")
    assert len(accepted) == len(set(accepted)) and set(accepted) <= set(stored)
    assert all(count == 1 for count in stored.values())
    # One limit across both hosts: each host alone would take up to the whole rate.
    assert 0 < len(accepted) <= rate * windows
    assert all(result["statuses"].get("429", 0) > 0 for result in results)
    assert exits == {"host1": 0, "host2": 0}
