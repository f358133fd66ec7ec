"""Start the real app under a real gunicorn on 127.0.0.1 for end-to-end and reliability tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(database_url: str, port: int, env: dict[str, str] | None = None,
                   args: tuple[str, ...] = ("-w", "2")) -> subprocess.Popen[bytes]:
    """gunicorn with ``gunicorn.conf.py`` and the app factory; returns once /healthz answers.

    Raises RuntimeError with the end of gunicorn's log if it does not start within 30 s."""
    environment = {**os.environ, "TRACE_DATABASE_URL": database_url, "TRACE_FLUSH_INTERVAL": "0.05",
                   "TRACE_SHUTDOWN_TIMEOUT": "5", **(env or {})}
    # The log goes to a file, not a pipe: a pipe nobody reads fills up and blocks gunicorn.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), *args,
             "-b", f"127.0.0.1:{port}", "trace_service.http.app:create_app()"],
            cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=log,
        )
        if not wait_healthy(port, 30):
            process.kill()
            process.wait(10)
            log.seek(0)
            raise RuntimeError(f"gunicorn did not start: {log.read().decode()[-2000:]}")
    return process


def stop_gunicorn(process: subprocess.Popen[bytes], timeout: float = 30) -> float:
    """SIGTERM (graceful: each worker's writer flushes at exit); seconds until it exited."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        raise
    return time.monotonic() - started


def wait_healthy(port: int, timeout: float) -> bool:
    """Whether GET /healthz answers 200 within ``timeout`` seconds."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        pause.wait(0.2)
    return False
