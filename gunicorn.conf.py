"""gunicorn settings for production:

    TRACE_DATABASE_URL=mysql://... gunicorn -c gunicorn.conf.py 'trace_service.http.app:create_app()'

Every setting can be overridden on the command line or with GUNICORN_* variables.
"""

import multiprocessing
import os
import shutil
import tempfile

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2))
# The worker class follows where a 202 waits (GUNICORN_WORKER_CLASS overrides it).
# - In-process path (no TRACE_QUEUE_URL): sync workers, 2 per core. A request never waits on I/O
#   (the writer thread writes), and the writer needs a real thread: under gevent it becomes a
#   greenlet that runs only when every request waits, and bench/ingest.py saw 91% of the batch
#   posts refused with its queue full.
# - Durable path (TRACE_QUEUE_URL): gevent workers. Each request waits one round trip for Redis;
#   a sync worker sits idle meanwhile, a gevent worker serves its other clients, and keeps their
#   connections alive (a sync worker closes each one). bench/ingest.py: +45% req/s, README.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or (
    "gevent" if os.environ.get("TRACE_QUEUE_URL") else "sync")
# Clients served at once by one gevent worker (gunicorn's default is 1000); each request in
# flight holds one of the worker's Redis connections (trace_service.http.stream.Appender).
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", 200))
timeout = 30
graceful_timeout = 10          # SIGTERM: each worker's writer flushes within its deadline
keepalive = 5
max_requests = 100_000         # recycle workers now and then
max_requests_jitter = 10_000
# Not preloaded: each worker builds its own app, engines and writer thread. (--preload also
# works: the writer restarts its thread after fork. Not on gevent workers: the app would be
# built before gevent patches threading, without its body deadline, trace_service.http.body_deadline.)
preload_app = False
limit_request_line = 8190
limit_request_fields = 100
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"

# One /metrics for the whole service: prometheus-client's multiprocess mode keeps each worker's
# counters in files of this directory and any worker's scrape sums them
# (trace_service/http/metrics.py). Set before the workers import prometheus-client; a directory
# of our own, emptied at start, unless the deployment names one.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="trace-service-metrics-")


def on_starting(server):  # gunicorn's hook signature
    """A fresh start counts from zero: files of an earlier run would be summed in."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def child_exit(server, worker):  # gunicorn's hook signature
    """A dead worker's live gauges leave the sum (its counters stay: they happened)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
