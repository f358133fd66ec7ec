"""``POST /api/telemetry/traces``: legacy services (PHP among them) post traces here.

One trace (a JSON object), a batch (a JSON list), or a PHP ``http_build_query`` form; gzip
allowed (``trace_service.http.ingest_body``). Each item is validated (``trace_service.http.ingest_schema``),
answered ``duplicate`` when its ``event_id`` is already stored (``trace_service.idempotency``),
and otherwise handed with its id to the app's :class:`~trace_service.writer.TraceWriter`, which
masks it and stores it at most once per id (the id is remembered in the transaction that stores
the row, so a trace that is lost after its ``202`` can be retried). Answers:

======  =======================================================================================
202     per-item results (accepted / duplicate / rejected with field errors / dropped /
        discarded: sampled out or telemetry switched off, ``trace_service.controls``)
400     malformed body           401  no or unknown key        403  key without ``ingest``
413     body or batch too large  415  unsupported type/encoding 422  nothing valid
429     over the key's rate, or too many auth failures from the ip (``Retry-After``)
503     the writer's queue is full or its database is down (``Retry-After``): retry later
======  =======================================================================================

Never a 500 for anything a client sent: every refusal is JSON with a message that names the
problem and the fix.

The view's work is :func:`answer_post`, which needs no Flask request: the Flask view
:func:`post_traces` and the WSGI route in front of Flask (``trace_service.http.ingest_route``,
which spares a single trace Flask's request cycle) both call it with what they read of the
request, and both make its answer into a response with :func:`answer_response`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.json.provider import DefaultJSONProvider
from marshmallow import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from governance.errors import IngestError
from trace_service import context
from trace_service.http.config import ServiceConfig
from trace_service.http.ingest_body import BodyLimits, decode_body
from trace_service.http.ingest_schema import load_trace
from trace_service.http.keys import ApiKey, KeyStore
from trace_service.http.metrics import IngestMetrics
from trace_service.http.rate_limits import RateLimits
from trace_service.http.stream import TraceStream
from trace_service.idempotency import stored_ids
from trace_service.log_throttle import ThrottledLogger
from trace_service.php_json import encode_metadata
from trace_service.queue import DiscardReason
from trace_service.stream_entry import encode_entry, new_event_id
from trace_service.writer import TraceWriter, make_item

ingest = Blueprint("ingest", __name__)
logger = logging.getLogger("trace_service.http.ingest")
_RECORDING = threading.Lock()  # see store()


def auth_log(extensions: dict[str, Any] | None = None) -> ThrottledLogger:
    """The app's auth-failure log: a line a minute per kind, so key guessing cannot flood it.
    ``extensions``: the app's, when the caller has them at hand."""
    extensions = current_app.extensions if extensions is None else extensions
    if "trace_auth_log" not in extensions:
        extensions["trace_auth_log"] = ThrottledLogger(logger, 60.0)
    log: ThrottledLogger = extensions["trace_auth_log"]
    return log


def authenticate(limits: RateLimits, scope: str = "ingest",
                 extensions: dict[str, Any] | None = None) -> ApiKey:
    """The Flask request's key if it carries ``scope``, within its rate: :func:`check_key` with
    the request's address and ``Authorization`` header. ``extensions``: the app's, when the
    caller has them at hand (each ``current_app`` lookup costs)."""
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    store: KeyStore = (current_app.extensions if extensions is None else extensions)["trace_keys"]
    return check_key(limits, store, req.remote_addr or "", req.headers.get("Authorization", ""),
                     scope)


def check_key(limits: RateLimits, store: KeyStore, address: str, header: str,
              scope: str = "ingest") -> ApiKey:
    """The key in ``header`` (``Authorization``) if it carries ``scope``, within its rate;
    refusals count against the client ``address``. Raises :class:`IngestError` (401, 403 or
    429) otherwise."""
    wait = limits.auth_blocked(address)
    if wait is not None:
        raise IngestError(429, "too many requests without a valid key from this address: fix the "
                               "key, then retry after Retry-After seconds", wait)
    scheme, _, token = header.partition(" ")
    key = store.authenticate(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if key is None or not key.allows(scope):
        limits.auth_failed(address)
        if not header:
            raise IngestError(401, "no API key: send Authorization: Bearer <key> "
                                   "(`flask keys create`)")
        if key is None:
            raise IngestError(401, "unknown or revoked API key: ask for a new one "
                                   "(`flask keys create`)")
        raise IngestError(403, f"key {key.key_prefix}... has no '{scope}' scope: use a key "
                               f"created with --scope {scope}")
    wait = limits.take(f"key:{key.id}")
    if wait is not None:
        raise IngestError(429, "over this key's rate limit (TRACE_INGEST_RATE): batch the traces "
                               "or retry after Retry-After seconds", wait)
    return key


def require_key(scope: str) -> Callable[[], Response | None]:
    """A ``before_request`` hook for a blueprint whose every view needs a key with ``scope``:
    the refusal (401/403/429) as :func:`refuse` answers it, or None to go on."""

    def check() -> Response | None:
        try:
            authenticate(current_app.extensions["trace_ratelimits"], scope)
        except IngestError as exc:
            return refuse(exc.status, exc.message, exc.retry_after)
        return None

    return check


def app_engine() -> Engine:
    """The app's database engine."""
    engine: Engine = current_app.extensions["trace_engine"]
    return engine


@dataclass(frozen=True, slots=True)
class Answer:
    """The endpoint's JSON answer: body, status, and ``Retry-After`` seconds for a refusal."""

    body: dict[str, Any]
    status: int
    retry_after: float | None = None


def refuse(status: int, message: str, retry_after: float | None = None) -> Response:
    """The JSON refusal of a view in a Flask request (:func:`refusal`, answered)."""
    return answer_response(current_app._get_current_object(),  # type: ignore[attr-defined]
                           refusal(status, message, g.get("request_id"), retry_after))


def refusal(status: int, message: str, request_id: str | None,
            retry_after: float | None = None) -> Answer:
    """The endpoints' JSON refusal: the message, the status, the request id (and Retry-After)."""
    return Answer({"error": message, "status": status, "request_id": request_id}, status,
                  retry_after)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` in whole seconds, at least 1 (0 would invite an immediate retry storm)."""
    return str(max(1, math.ceil(seconds)))


def count_refusal(metrics: IngestMetrics, exc: IngestError, address: str | None = None,
                  extensions: dict[str, Any] | None = None) -> None:
    """Count a request refused whole, and log key failures (throttled; never the key itself).
    ``address``: the client's (the Flask request's when not given); ``extensions``: the app's."""
    if exc.status in (401, 403):
        metrics.auth_failures.inc()
        auth_log(extensions).log(logging.WARNING, f"auth{exc.status}",
                                 "ingest refused a request from %s (%d): %s",
                                 request.remote_addr if address is None else address,
                                 exc.status, exc.message)
    metrics.rejected.labels(reason=str(exc.status)).inc()


def _room_or_refuse(writer: TraceWriter, count: int) -> None:
    """503 unless the writer can take ``count`` more records now (an HTTP client can retry)."""
    retry = "nothing was stored; retry after the Retry-After delay"
    if not writer.accepting:
        raise IngestError(503, f"the trace database is unavailable: {retry}", writer.retry_after())
    if writer.room() < count:
        raise IngestError(503, f"the write queue is full: {retry}", 1.0)


def _validate(items: list[Any]) -> list[dict[str, Any]]:
    """Each item loaded by the schema, or a ``rejected`` result naming its fields."""
    loaded: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            loaded.append({"index": index, "data": load_trace(item)})
        except ValidationError as exc:
            loaded.append({"index": index, "status": "rejected", "errors": exc.messages})
    return loaded


def _stored_ids(engine: Engine, loaded: list[dict[str, Any]], window: float) -> set[str]:
    """The items' event ids whose first copy is already stored (read only: ids are remembered
    by the write that stores their trace, ``trace_service.idempotency``). Raises a 503
    :class:`IngestError` before anything is recorded when the database cannot answer."""
    ids = {str(entry["data"]["event_id"]) for entry in loaded
           if "data" in entry and entry["data"]["event_id"] is not None}
    if not ids or window <= 0:
        return set()
    try:
        return stored_ids(engine, ids, window)
    except SQLAlchemyError:
        raise IngestError(503, "the trace database is unavailable: nothing was stored; retry "
                               "after the Retry-After delay", 5.0) from None


def _request_context(data: dict[str, Any]) -> context.RequestInfo:
    """The client's own ip and user agent when the body says, the request's otherwise (as the
    app's request hook bound them, ``trace_service.flask_ext``, with PHP's fallbacks); the route
    is the body's or none (never this endpoint's); the request id is already normal."""
    bound = context.current()
    return context.RequestInfo(bound.request_id, data.pop("ip_address") or bound.ip_address,
                               data.pop("user_agent") or bound.user_agent, None)


Discards = list[tuple[DiscardReason, str]]


def _discarded(writer: TraceWriter, index: int, data: dict[str, Any], event_id: object,
               discards: Discards) -> dict[str, Any] | None:
    """The ``discarded`` result of an item the kill switch, sampling or an opted-out actor keeps
    out (the decision ``record()`` makes too), noted in ``discards`` for the caller to count
    once the request is answered; or None to store it."""
    reason = writer.gate.reason(data["event_key"], data["severity"],
                                data["request_id"] or context.current().request_id)
    if reason is None and _opted_out(writer, data["actor_admin_id"], None):
        reason = DiscardReason.OPTED_OUT
    if reason is None:
        return None
    discards.append((reason, data["event_key"]))
    result: dict[str, Any] = {"index": index, "status": "discarded", "reason": str(reason)}
    if event_id is not None:
        result["event_id"] = str(event_id)
    return result


def _opted_out(writer: TraceWriter, actor_id: Any, metadata_text: str | None) -> bool:
    """Whether the trace's actor, or an email hash in its masked metadata, opted out (the
    writer's refreshed set; the sink checks the metadata of the in-process path's traces)."""
    return writer.opt_outs is not None and writer.opt_outs.current.excludes(
        actor_id if type(actor_id) is int else None, metadata_text)


def _record_item(writer: TraceWriter, entry: dict[str, Any], committed: set[str],
                 window: float, discards: Discards) -> dict[str, Any]:
    if "data" not in entry:
        return entry
    index, data = entry["index"], entry["data"]
    event_id = data.pop("event_id")
    if event_id is not None and str(event_id) in committed:
        return {"index": index, "status": "duplicate", "event_id": str(event_id)}
    discarded = _discarded(writer, index, data, event_id, discards)
    if discarded is not None:
        return discarded
    token = context.bind(_request_context(data))
    try:
        stored = writer.record(data.pop("event_key"),
                               event_id=event_id if window > 0 else None, **data)
    finally:
        context.unbind(token)
    result: dict[str, Any] = {"index": index, "status": "accepted" if stored else "dropped"}
    if event_id is not None:
        result["event_id"] = str(event_id)
    return result


def _stream_items(writer: TraceWriter, loaded: list[dict[str, Any]],
                  discards: Discards) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The durable path: each valid item as a stream entry, masked here (no secret reaches
    Redis) and given an ``event_id`` when the client sent none (so a redelivered entry is a
    duplicate, never a second row); and the per-item results to answer once Redis took them."""
    entries: list[bytes] = []
    results: list[dict[str, Any]] = []
    for entry in loaded:
        if "data" not in entry:
            results.append(entry)
            continue
        index, data = entry["index"], entry["data"]
        discarded = _discarded(writer, index, data, data["event_id"], discards)
        if discarded is not None:
            results.append(discarded)
            continue
        event_id = str(data.pop("event_id") or new_event_id())
        token = context.bind(_request_context(data))
        try:
            metadata = data.pop("metadata")
            item = make_item(data.pop("event_key"), data.pop("severity"), data.pop("actor_admin_id"),
                             None, data.pop("route_name"), data.pop("request_id"),
                             None, None, data.pop("occurred_at"), event_id)
            # Parsed from this request's body, so ours to mask in place; encoded here, once,
            # so that the consumers only write.
            masked, plain = (None, False) if metadata is None else writer.masker.mask_plain(metadata)
            text = encode_metadata(masked, plain=plain)
            if _opted_out(writer, None, text):  # the actor was checked by _discarded
                discards.append((DiscardReason.OPTED_OUT, item.event_key))
                results.append({"index": index, "status": "discarded",
                                "reason": str(DiscardReason.OPTED_OUT), "event_id": event_id})
                continue
            entries.append(encode_entry(item, text))
        except Exception as exc:  # the item is answered dropped, never stored unmasked
            logger.warning("ingest dropped an item it could not queue: %s", type(exc).__name__)
            results.append({"index": index, "status": "dropped", "event_id": event_id})
            continue
        finally:
            context.unbind(token)
        results.append({"index": index, "status": "accepted", "event_id": event_id})
    return entries, results


def admit(count: int, extensions: dict[str, Any] | None = None,
          ) -> tuple[TraceWriter, TraceStream | None, bool]:
    """The app's writer, its stream (None on the in-process path) and whether telemetry is
    switched off, once there is room for ``count`` more traces (503 :class:`IngestError`
    otherwise, before anything is stored). ``extensions``: the app's, if at hand."""
    ext = current_app.extensions if extensions is None else extensions
    writer: TraceWriter = ext["trace_writer"]
    stream: TraceStream | None = ext.get("trace_stream")
    switched_off = writer.gate.switch.off()  # every item discarded: no store is touched
    if stream is None and not switched_off:
        _room_or_refuse(writer, count)
    return writer, stream, switched_off


def store(writer: TraceWriter, stream: TraceStream | None, loaded: list[dict[str, Any]],
          window: float, switched_off: bool, *, read_stored: bool = True,
          engine: Engine | None = None) -> list[dict[str, Any]]:
    """Store validated items (``{"index", "data"}``; any other entry is passed through as its
    own result) on the durable path or through the writer, with the discards of sampling, the
    kill switch and opt-outs; the per-item results. Raises 503 :class:`IngestError` when Redis or
    the database cannot take them (nothing stored).

    ``read_stored`` first reads which event ids are already stored (in ``engine``, the app's
    by default), to answer them ``duplicate``; a caller that answers no item by item passes
    False: the writer skips them all the same, in the transaction that claims the ids."""
    discards: Discards = []
    if stream is not None:
        entries, results = _stream_items(writer, loaded, discards)
        if entries:
            stream.append(entries)  # 202 only once Redis holds them all (503 otherwise)
    else:
        committed = set() if switched_off or not read_stored else _stored_ids(
            app_engine() if engine is None else engine, loaded, window)
        # One request's room check and records at a time in this process: in a threaded worker
        # (gunicorn gthread), two requests could each see room for their batch and then fill
        # the queue together, part of a batch answered 202 with its items "dropped" where the
        # whole request should have been a 503 with nothing stored. Uncontended in sync workers.
        # admit()'s check stays as the cheap refusal before validation; this one decides.
        with _RECORDING:
            if not switched_off:
                _room_or_refuse(writer, sum(1 for entry in loaded if "data" in entry))
            results = [_record_item(writer, entry, committed, window, discards) for entry in loaded]
    # Counted once the items are answered: after a 503 (Redis refused) the client retries, and
    # counting before would count them twice.
    for reason, key in discards:
        writer.count_discarded(reason, key)
    return results


RESULT_STATUSES = ("accepted", "duplicate", "rejected", "dropped", "discarded")


def count_results(metrics: IngestMetrics, results: list[dict[str, Any]]) -> dict[str, int]:
    """How many results have each status, counted in the metrics too."""
    counts = {status: sum(1 for r in results if r["status"] == status) for status in RESULT_STATUSES}
    metrics.accepted.inc(counts["accepted"])
    if counts["rejected"]:
        metrics.rejected.labels(reason="invalid_item").inc(counts["rejected"])
    return counts


PATH = "/api/telemetry/traces"
ENDPOINT = "ingest.post_traces"  # Flask's name for post_traces, the request's route_name


@dataclass(frozen=True, slots=True)
class PostedTraces:
    """What the endpoint reads of a request: the client's address, its ``Authorization``,
    ``Content-Type`` and ``Content-Encoding`` headers, and the body, read only once the key is
    known. Taken from Flask's request (:func:`post_traces`) or straight from the WSGI environ
    (``trace_service.http.ingest_route``), the same way."""

    address: str
    authorization: str
    content_type: str | None
    content_encoding: str | None
    read_body: Callable[[], bytes]


@ingest.post(PATH)
def post_traces() -> Response:
    """Accept traces from other services; see the module docstring for the answers."""
    # The app's and the request's objects, each looked up once: a lookup through Flask's
    # proxies costs a few microseconds, and a single-trace request made over a dozen.
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    req = request._get_current_object()  # type: ignore[attr-defined]
    posted = PostedTraces(req.remote_addr or "", req.headers.get("Authorization", ""),
                          req.content_type, req.headers.get("Content-Encoding"),
                          lambda: req.get_data(cache=False))
    return answer_response(app, answer_post(app.extensions, posted))


def answer_post(extensions: dict[str, Any], posted: PostedTraces) -> Answer:
    """The endpoint's work for one request, with no Flask request around it: authenticate,
    decode, validate, store, count. The request's context (``trace_service.context``) must be
    bound: its request id is answered, and traces without their own take it."""
    started = time.perf_counter()
    metrics: IngestMetrics = extensions["trace_metrics"]
    config: ServiceConfig = extensions["trace_config"]
    try:
        check_key(extensions["trace_ratelimits"], extensions["trace_keys"], posted.address,
                  posted.authorization)
        items, batch = decode_body(posted.read_body(), posted.content_type,
                                   posted.content_encoding,
                                   BodyLimits(config.ingest_max_bytes, config.ingest_max_items))
        writer, stream, switched_off = admit(len(items), extensions)
        metrics.received.inc(len(items))
        loaded = _validate(items)
        results = store(writer, stream, loaded, config.idempotency_window, switched_off,
                        engine=extensions["trace_engine"])
    except IngestError as exc:
        count_refusal(metrics, exc, posted.address, extensions)
        return refusal(exc.status, exc.message, context.current().request_id, exc.retry_after)
    finally:
        metrics.latency.observe(time.perf_counter() - started)
    counts = count_results(metrics, results)
    status = 422 if counts["rejected"] == len(results) else 202
    body = {"request_id": context.current().request_id, **counts, "items": results}
    if not batch and status == 202:
        body["status"] = results[0]["status"]
    return Answer(body, status)


def answer_response(app: Flask, answer: Answer) -> Response:
    """The answer as the response :func:`refuse` or a view's ``(body, status)`` would make."""
    response = json_answer(app, answer.body, answer.status)
    if answer.retry_after is not None:
        response.headers["Retry-After"] = retry_after_header(answer.retry_after)
    return response


def json_answer(app: Flask, body: dict[str, Any], status: int) -> Response:
    """What Flask makes of ``(body, status)``, byte for byte, with the app's encoder built once
    (``trace_json_encoder``): Flask's ``json.dumps`` with its arguments builds a new encoder for
    every response, a third of the answer's cost. Flask's own path in debug mode (indented)."""
    encoder: json.JSONEncoder | None = app.extensions.get("trace_json_encoder")
    if encoder is None or app.debug:
        return app.make_response((body, status))
    return Response(encoder.encode(body) + "\n", status, mimetype="application/json")


def compact_json_encoder(app: Flask) -> json.JSONEncoder | None:
    """The encoder Flask's JSON provider uses for compact answers, or None when the app's
    provider is not Flask's default (then :func:`json_answer` leaves answers to Flask)."""
    provider = app.json
    if type(provider) is not DefaultJSONProvider or provider.compact is False:
        return None
    return json.JSONEncoder(ensure_ascii=provider.ensure_ascii, sort_keys=provider.sort_keys,
                            separators=(",", ":"), default=provider.default)
