"""Which gunicorn worker class each ingest path runs on, and the warning when gevent hosts the
in-process writer.

The durable path (``TRACE_QUEUE_URL``) runs on gevent workers: each request waits one round trip
for Redis, and a gevent worker serves its other clients meanwhile. The in-process path stays on
sync workers: its writer needs a real thread. The durable path's reliability tests
(``tests/reliability/test_durable_queue.py``) run under gunicorn.conf.py, so on gevent workers.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gunicorn import ROOT
from tests.support.redis_server import RedisServer

WARNING = "gevent workers without TRACE_QUEUE_URL"


def worker_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> dict[str, object]:
    """gunicorn.conf.py's settings as gunicorn reads them, with exactly ``env`` of ours set."""
    for name in ("TRACE_QUEUE_URL", "GUNICORN_WORKER_CLASS", "GUNICORN_WORKER_CONNECTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # else it makes a directory
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_the_durable_path_runs_on_gevent_workers_and_the_in_process_path_on_sync(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert worker_settings(monkeypatch, tmp_path)["worker_class"] == "sync"
    durable = worker_settings(monkeypatch, tmp_path, TRACE_QUEUE_URL="redis://redis:6379/0")
    assert durable["worker_class"] == "gevent"
    assert durable["worker_connections"] == 200


def test_the_worker_class_named_by_the_deployment_wins(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    settings = worker_settings(monkeypatch, tmp_path, TRACE_QUEUE_URL="redis://redis:6379/0",
                               GUNICORN_WORKER_CLASS="sync", GUNICORN_WORKER_CONNECTIONS="50")
    assert (settings["worker_class"], settings["worker_connections"]) == ("sync", 50)
    assert worker_settings(monkeypatch, tmp_path, GUNICORN_WORKER_CLASS="gevent")[
        "worker_class"] == "gevent"


_BUILD = """
import sys
if sys.argv[1] == "gevent":
    from gevent import monkey
    monkey.patch_all()  # what gunicorn's gevent worker does before it loads the app
from trace_service.http.app import create_app
create_app()
print("built")
"""


@pytest.mark.parametrize(("workers", "queue", "warned"), [
    ("gevent", False, True),
    ("gevent", True, False),
    ("plain", False, False),
])
def test_an_app_built_under_gevent_without_a_queue_warns_that_its_writer_will_starve(
        workers: str, queue: bool, warned: bool, sqlite_url: str,
        request: pytest.FixtureRequest) -> None:
    env = {**os.environ, "TRACE_DATABASE_URL": sqlite_url}
    env.pop("TRACE_QUEUE_URL", None)
    if queue:  # a real one: the app reads its persistence settings at start
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        env["TRACE_QUEUE_URL"] = redis_server.url
    built = subprocess.run([sys.executable, "-c", _BUILD, workers], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert built.stdout.strip() == "built", built.stderr[-2000:]
    assert (WARNING in built.stderr) is warned, built.stderr[-2000:]
