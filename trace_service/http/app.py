"""The Flask application factory: ``flask --app trace_service run`` or gunicorn.

Importing this module creates nothing; :func:`create_app` builds an app from a :class:`ServiceConfig`
(``ServiceConfig.from_env()`` when none is given), with the request-id extension, the trace writer, the
health endpoints, JSON errors, and its ``flask`` command groups (:class:`ServiceCommands`).
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Any

import click
import redis
from flask import Blueprint, Flask, Response, current_app, g, jsonify
from flask.cli import AppGroup
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.engine import Engine
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from governance.audit_guard import blocked_total
from governance.grants import GrantReport, check_grants
from trace_service.db import create_engine, table_layout
from trace_service.errors import ConfigError, TelemetryError
from trace_service.flask_ext import RequestContext
from trace_service.http.body_deadline import BodyDeadline, threads_are_greenlets
from trace_service.http.config import ServiceConfig
from trace_service.http.counters import CounterPersister, service_counters
from trace_service.http.ingest import compact_json_encoder, ingest
from trace_service.http.ingest_route import IngestRoute
from trace_service.http.keys import KeyStore
from trace_service.http.metrics import IngestMetrics
from trace_service.http.openapi import DOCUMENT
from trace_service.http.otlp import otlp
from trace_service.http.rate_limits import RateLimits
from trace_service.http.reports_view import reports_view
from trace_service.http.stream import TraceStream, queue_status
from trace_service.http.traces_view import traces_view
from trace_service.writer import TraceWriter

logger = logging.getLogger("trace_service.http.app")
COMMANDS_GROUP = "trace_service.commands"

request_context = RequestContext()
health = Blueprint("health", __name__)


def create_app(config: ServiceConfig | None = None) -> Flask:
    """Build the service app from ``config`` (``ServiceConfig.from_env()`` by default)."""
    config = config or ServiceConfig.from_env()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["trace_json_encoder"] = compact_json_encoder(app)
    app.extensions["trace_config"] = config
    app.extensions["trace_engine"] = create_engine(
        config.database_url, connect_timeout=config.connect_timeout, io_timeout=config.io_timeout
    )
    app.extensions["trace_grants"] = _check_grants_at_start(app.extensions["trace_engine"], config)
    writer = app.extensions["trace_writer"] = TraceWriter.from_config(config)
    app.extensions["trace_keys"] = KeyStore(app.extensions["trace_engine"], config.key_cache_seconds)
    stream = app.extensions["trace_stream"] = _stream_at_start(config) if config.queue_url else None
    greenlets = threads_are_greenlets()  # gevent workers (gunicorn.conf.py with a queue)
    if stream is None and greenlets:
        logger.warning("gevent workers without TRACE_QUEUE_URL: the in-process writer is a greenlet "
                       "that runs only while every request waits, so under load its queue fills and "
                       "ingest answers 503; run the in-process path on sync workers "
                       "(gunicorn.conf.py's choice without TRACE_QUEUE_URL)")
    metrics = app.extensions["trace_metrics"] = IngestMetrics(writer.stats, None if stream is None else (
        lambda: queue_status(stream.client, stream.stream, config.queue_group)))
    app.extensions["trace_counters"] = CounterPersister(
        app.extensions["trace_engine"], lambda: service_counters(writer, metrics),
        config.counters_persist_seconds, config.log_interval, before_exit=writer.close).start()
    app.config["MAX_CONTENT_LENGTH"] = config.ingest_max_bytes  # 413 before the body is read
    app.extensions["trace_ratelimits"] = RateLimits(
        config.ratelimit_storage, config.ingest_rate, config.auth_failure_rate)
    if config.ingest_fast_route:
        # Inside ProxyFix: the route reads the client address ProxyFix has set.
        app.wsgi_app = IngestRoute(app, app.wsgi_app)  # type: ignore[method-assign]
    if config.trusted_proxies:
        # Only behind proxies the deployment vouches for: X-Forwarded-For is otherwise forgeable.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=config.trusted_proxies, x_proto=config.trusted_proxies)
    if greenlets:
        # A gevent worker puts no limit of its own on a body that trickles in (body_deadline).
        # Decided when the app is built: gunicorn.conf.py does not preload (see there).
        app.wsgi_app = BodyDeadline(app.wsgi_app, config.ingest_body_seconds)  # type: ignore[method-assign]
    request_context.init_app(app)
    app.register_blueprint(ingest)
    app.register_blueprint(health)
    app.register_blueprint(reports_view)
    app.register_blueprint(traces_view)  # GETs beside ingest's POST on /api/telemetry/traces
    app.register_blueprint(otlp)  # OTLP/HTTP: /v1/logs, /v1/traces
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.cli = ServiceCommands(app.name)
    return app


class ServiceCommands(AppGroup):
    """The app's ``flask`` command groups (db, keys, guard, jobs, governance, queue, traces).

    All are declared alike, as entry points of the group ``trace_service.commands`` in
    setup.cfg, and belong to this app only. Not ``flask.commands``: Flask adds those to every
    app in the environment, where our ``db`` would shadow a backend app's own ``flask db``.
    Each is imported when the command line asks for it, never by a web worker: the service
    does not import ``jobs``, which builds on it, and a broken command cannot stop it starting.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_entry_points()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command: click.Command | None = super().get_command(ctx, cmd_name)
        if command is None:  # not loaded yet: read the installed metadata only then
            entry = _entry_points().get(cmd_name)
            if entry is not None:
                command = entry.load()
                self.add_command(command, cmd_name)
        return command


def _entry_points() -> dict[str, Any]:
    return {entry.name: entry for entry in entry_points(group=COMMANDS_GROUP)}


def _check_grants_at_start(engine: Engine, config: ServiceConfig) -> GrantReport:
    """Could our own database user write audit_logs? Logged, shown in /readyz, optionally fatal."""
    report = check_grants(engine)
    report.log(logger)
    if report.violations and config.refuse_audit_writer:
        raise ConfigError(
            f"the database user {report.user} could write audit_logs "
            f"({report.violations[0].privilege} on {report.violations[0].table}); revoke it "
            "(`flask guard grants` prints what the user needs) or unset TRACE_REFUSE_AUDIT_WRITER"
        )
    return report


def _stream_at_start(config: ServiceConfig) -> TraceStream:
    """The Redis stream of the durable path, and, in the log, what a 202 promises with the
    persistence settings Redis has (it may be down now: requests then get 503s until it is up)."""
    stream = TraceStream(config.queue_url, config.queue_stream, config.queue_max_length,
                         config.connect_timeout)
    try:
        durability = stream.durability()
    except redis.RedisError as exc:
        logger.warning("the trace queue (TRACE_QUEUE_URL) does not answer (%s): ingest answers 503 "
                       "until it does", type(exc).__name__)
        return stream
    logger.info("durable ingest on %s: %s", config.queue_stream, durability.promise())
    for problem in durability.problems():
        logger.warning("the trace queue can lose accepted traces: %s", problem)
    return stream


def get_writer() -> TraceWriter:
    """The current app's trace writer."""
    writer: TraceWriter = current_app.extensions["trace_writer"]
    return writer


def get_engine() -> Engine:
    """The current app's engine for reads and commands (the writer has its own)."""
    engine: Engine = current_app.extensions["trace_engine"]
    return engine


@health.get("/healthz")
def healthz() -> Any:
    """The process is up."""
    return {"status": "ok"}


@health.get("/readyz")
def readyz() -> Any:
    """The database answers and the table's layout is known."""
    try:
        engine = get_engine()
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        layout = table_layout(engine)
    except TelemetryError as exc:
        return {"status": "unavailable", "reason": str(exc)}, 503
    except Exception as exc:  # readiness reports, it does not crash
        logger.warning("readiness check failed: %s", type(exc).__name__)
        return {"status": "unavailable", "reason": f"database: {type(exc).__name__}"}, 503
    queue = _queue_readiness()
    if queue.get("status") == "unavailable":
        return {"status": "unavailable", "reason": f"queue: {queue['reason']}"}, 503
    return {
        "status": "ready",
        "layout": layout.name,
        "queue": queue,
        "writer": get_writer().stats().as_dict(),
        "audit_guard": {"blocked": blocked_total(),
                        "grants": current_app.extensions["trace_grants"].as_dict()},
    }


def _queue_readiness() -> dict[str, Any]:
    stream: TraceStream | None = current_app.extensions.get("trace_stream")
    if stream is None:
        return {"mode": "in-process"}
    try:
        return {"mode": "redis", "stream": stream.stream, "length": stream.length(),
                "max_length": stream.max_length}
    except redis.RedisError as exc:
        return {"mode": "redis", "status": "unavailable", "reason": type(exc).__name__}


@health.get("/metrics")
def metrics() -> Any:
    """Prometheus text format."""
    return Response(current_app.extensions["trace_metrics"].exposition(), mimetype=CONTENT_TYPE_LATEST)


@health.get("/api/openapi.json")
def openapi() -> Any:
    """The OpenAPI 3 document of this API."""
    return DOCUMENT


def _http_error(exc: HTTPException) -> Any:
    """Werkzeug's error as JSON, keeping its headers (``Allow`` on a 405: RFC 9110 requires it)."""
    body = jsonify(error=exc.description or exc.name, status=exc.code, request_id=g.get("request_id"))
    headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"]
    return body, exc.code or 500, headers


def _unexpected_error(exc: Exception) -> Any:
    logger.exception("unhandled error")
    return jsonify(error="unexpected error; it was logged", status=500,
                   request_id=g.get("request_id")), 500
