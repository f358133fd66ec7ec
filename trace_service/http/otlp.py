"""``POST /v1/logs`` and ``POST /v1/traces``: the OTLP/HTTP receiver.

An OpenTelemetry SDK or Collector sends here with configuration alone (the endpoint URL and an
``Authorization: Bearer <key>`` header). Each log record or span becomes a trace
(``trace_service.otlp_mapping``) and goes the way of every posted trace: the same keys and
``ingest`` scope, the same per-key rate limits and body limit (``TRACE_INGEST_MAX_BYTES``, after
gzip too), the same writer or durable stream path, sampling, kill switch and opt-outs, the same
metrics (``trace_service.http.ingest``). Ids derived from each record make an exporter's retry
of a batch a duplicate, stored once.

Answers, as the OTLP/HTTP specification says, in the request's encoding (protobuf or JSON):

======  =======================================================================================
200     ``Export*ServiceResponse``: empty when every record was stored or deliberately discarded
        (sampled out, switched off, opted out); with ``partial_success`` (the count of rejected
        records and a message naming each one's problem) when some could not be traces
400     the body is not an export request (``google.rpc.Status`` with a ``BadRequest``)
401/403 no or unknown key / key without ``ingest``     413  body over the limit
415     another Content-Type (the answer is then JSON), or a Content-Encoding other than gzip
429     over the key's rate, or too many auth failures from the address (``Retry-After``)
503     the writer's queue is full, the database or Redis is down (``Retry-After``): nothing
        was stored, and the exporter retries
======  =======================================================================================

``TRACE_INGEST_MAX_ITEMS`` does not apply: OTLP exporters batch by count with defaults above it
(the Python SDK 512, the Collector's batch processor 8192), and the specification's answer for a
batch too large is a 413 that the exporter must not retry, which would lose the batch. The byte
limit bounds the work of a request instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from governance.errors import IngestError, TraceInputError
from trace_service.http.config import ServiceConfig
from trace_service.http.ingest import (
    admit,
    authenticate,
    count_refusal,
    count_results,
    retry_after_header,
    store,
)
from trace_service.http.ingest_body import body_too_large, decompress
from trace_service.http.metrics import IngestMetrics
from trace_service.http.otlp_codec import (
    LOGS,
    MEDIA_TYPES,
    TRACES,
    Encoding,
    Signal,
    Unit,
    decode,
    encode_response,
    encode_status,
    encoding_of,
    rejection_message,
)
from trace_service.otlp_mapping import MappedTrace, map_log, map_span

otlp = Blueprint("otlp", __name__)
logger = logging.getLogger("trace_service.http.otlp")

Mapper = Callable[[Any, Any, Any, int], MappedTrace]


@otlp.post("/v1/logs")
def post_logs() -> Response:
    """Export log records (``ExportLogsServiceRequest``); see the module docstring."""
    return _export(LOGS, map_log)


@otlp.post("/v1/traces")
def post_traces() -> Response:
    """Export spans (``ExportTraceServiceRequest``); see the module docstring."""
    return _export(TRACES, map_span)


def _export(signal: Signal, mapper: Mapper) -> Response:
    started = time.perf_counter()
    metrics: IngestMetrics = current_app.extensions["trace_metrics"]
    config: ServiceConfig = current_app.extensions["trace_config"]
    encoding = encoding_of(request.content_type)
    try:
        authenticate(current_app.extensions["trace_ratelimits"])
        if encoding is None:
            raise IngestError(415, f"Content-Type {_mimetype() or '(none)'!r} is not OTLP/HTTP: "
                                   "send application/x-protobuf or application/json")
        units = decode(signal, _body(config.ingest_max_bytes), encoding)
        writer, stream, switched_off = admit(len(units))
        metrics.received.inc(len(units))
        loaded = _load(units, mapper, time.time_ns())
        # Not read_stored: an OTLP answer does not name duplicates, and the writer skips an id
        # already stored in the transaction that claims it; the read would cost a round trip
        # of every record's id on each request for the rare retry (bench/ingest.py --otlp).
        results = store(writer, stream, loaded, config.idempotency_window, switched_off,
                        read_stored=False)
    except IngestError as exc:
        count_refusal(metrics, exc)
        return status_response(exc.status, exc.message, encoding or "json", exc.retry_after)
    finally:
        metrics.latency.observe(time.perf_counter() - started)
    count_results(metrics, results)
    # A record the writer dropped (its breaker opened during the request) was not stored
    # either: it is counted as rejected, so that the answer never claims what did not happen.
    reasons = [_why(units[r["index"]], r) for r in results if r["status"] in ("rejected", "dropped")]
    message = rejection_message(signal, reasons, len(units)) if reasons else ""
    body = encode_response(signal, len(reasons), message, encoding)
    return Response(body, 200, content_type=MEDIA_TYPES[encoding])


def _mimetype() -> str:
    return (request.content_type or "").split(";", 1)[0].strip()[:60]


def _body(limit: int) -> bytes:
    """The request body, decompressed (``Content-Encoding: gzip``) within ``limit`` bytes."""
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:  # Content-Length over MAX_CONTENT_LENGTH: not read at all
        raise body_too_large(limit) from None
    return decompress(raw, request.headers.get("Content-Encoding") or "", limit)


def _load(units: list[Unit], mapper: Mapper, now_ns: int) -> list[dict[str, Any]]:
    """Each record as the validated item ``store`` takes, or a ``rejected`` result with why."""
    loaded: list[dict[str, Any]] = []
    for index, unit in enumerate(units):
        error = unit.error
        if error is None:
            try:
                loaded.append({"index": index, "data": _item(mapper(unit.record, unit.resource,
                                                                    unit.scope, now_ns))})
                continue
            except TraceInputError as exc:
                error = str(exc)
        loaded.append({"index": index, "status": "rejected", "errors": {"_record": [error]}})
    return loaded


def _item(mapped: MappedTrace) -> dict[str, Any]:
    """A mapped record in the form the JSON endpoint's schema loads a trace (``ingest_schema``):
    the client's address and agent come from the request, as for a posted trace."""
    return {"event_key": mapped.event_key, "severity": mapped.severity, "actor_admin_id": None,
            "route_name": None, "request_id": mapped.request_id, "ip_address": None,
            "user_agent": None, "metadata": mapped.metadata or None,
            "occurred_at": mapped.occurred_at, "event_id": mapped.event_id}


def _why(unit: Unit, result: dict[str, Any]) -> str:
    if result["status"] == "dropped":
        return (f"{unit.where}: dropped while being stored (the writer's queue filled or its "
                "database stopped answering during the request; /metrics counts it)")
    (reason,) = result["errors"]["_record"]
    return f"{unit.where}: {reason}"


def status_response(status: int, message: str, encoding: Encoding,
                    retry_after: float | None = None) -> Response:
    """A 4xx/5xx answer: a ``google.rpc.Status`` in ``encoding`` (and ``Retry-After``)."""
    response = Response(encode_status(status, message, encoding), status,
                        content_type=MEDIA_TYPES[encoding])
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after_header(retry_after)
    return response


@otlp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    """Werkzeug's refusals inside these views, as a Status (an exporter reads no other body)."""
    response = status_response(exc.code or 500, exc.description or exc.name,
                               encoding_of(request.content_type) or "json")
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


@otlp.errorhandler(Exception)
def _unexpected_error(exc: Exception) -> Response:
    """A bug, not the client's doing: logged, and answered as a Status without its text."""
    logger.exception("unhandled error in the OTLP receiver")
    return status_response(500, "unexpected error; it was logged",
                           encoding_of(request.content_type) or "json")
