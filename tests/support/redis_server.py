"""A real ``redis-server`` for the queue's tests: started by the test on a free port of its own,
its append-only file in a temporary directory, stopped (or killed, or restarted on the same
files) by pid. Never the machine's shared Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from tests.support.gunicorn import free_port

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer:
    """One redis-server process with AOF (``appendfsync always`` unless told otherwise)."""

    def __init__(self, directory: Path, port: int | None = None,
                 config: Mapping[str, str] | None = None, **settings: str) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.config = {"appendonly": "yes", "appendfsync": "always", "save": "",
                       "maxmemory-policy": "noeviction", **(config or {}), **settings}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(self.directory), "--daemonize", "no", "--protected-mode", "no"]
        for name, value in self.config.items():
            args += [f"--{name}", value]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def client(self) -> Any:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync (what a crash does)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
