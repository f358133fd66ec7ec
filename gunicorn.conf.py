"""gunicorn settings for production:

    TRACE_DATABASE_URL=mysql://... gunicorn -c gunicorn.conf.py 'trace_service.http.app:create_app()'

Every setting can be overridden on the command line or with GUNICORN_* variables.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Sync workers: the endpoint only validates and enqueues, so a request never waits on the
# database (the writer thread does); 2 per core keeps a core busy while the other parses.
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2))
worker_class = "sync"
timeout = 30
graceful_timeout = 10          # SIGTERM: each worker's writer flushes within its deadline
keepalive = 5
max_requests = 100_000         # recycle workers now and then
max_requests_jitter = 10_000
# Not preloaded: each worker builds its own app, engines and writer thread. (--preload also
# works: the writer restarts its thread after fork.)
preload_app = False
limit_request_line = 8190
limit_request_fields = 100
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
