"""OpenTelemetry (OTLP) log records and spans as traces: the arguments of ``make_item`` (pure).

The receiver (``trace_service.http.otlp``) decodes a request into records with their resource
and scope, then maps each one here; what comes out is stored like any posted trace (masked,
sampled, deduplicated by ``event_id``). The mapping, as the README's table has it:

===================  ===========================================  ==================================
trace field          from a log record                            from a span
===================  ===========================================  ==================================
event_key            ``event_name`` (or the attribute             ``name``
                     ``event.name``); else the body when it is a
                     short key-like string; else ``otel.log``
severity             ``severity_number`` 1-8 debug, 9-12 info,    status ERROR: error; else info
                     13-16 warning, 17-20 error, 21-24 critical;
                     unset: ``severity_text`` if known, else info
request_id           ``trace_id`` as 32 hex characters            ``trace_id`` as 32 hex characters
occurred_at          ``time_unix_nano``, else                     ``end_time_unix_nano`` (else the
                     ``observed_time_unix_nano``, else now (UTC)  start, else now)
metadata             ``attributes``, ``resource``, ``scope``,     ``attributes``, ``duration_ms``,
                     ``body`` (unless it is the key), ``span_id``  ``kind``, ``span_id``,
                                                                  ``parent_span_id``,
                                                                  ``status_message``, ``resource``,
                                                                  ``scope``
event_id             UUID of a hash of the record with its        UUID of trace_id + span_id
                     resource and scope
===================  ===========================================  ==================================

The ``event_id`` is derived from the record, never drawn: an exporter that retries a batch (its
answer was lost, or it got a 503) sends the same records, which get the same ids, and the
writer's idempotency (``trace_service.idempotency``) stores each once.

A record that cannot be a trace (a span without a name, an id of the wrong length, an event name
over 255 characters) raises :class:`TraceInputError` with the reason; the receiver counts it in
the answer's ``partial_success`` and stores nothing of it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from governance.errors import TraceInputError
from trace_service.values import canonical_severity

DEFAULT_LOG_KEY = "otel.log"
MAX_KEY = 255
TRACE_ID_BYTES, SPAN_ID_BYTES = 16, 8
# A body used as the event key must look like one: a dotted or colon-separated name, not a sentence.
_KEY_LIKE = re.compile(r"[A-Za-z0-9._:-]{1,255}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Fixed, so that ids stay the same across versions and hosts (uuid5 of this namespace).
_NAMESPACE = uuid.UUID("6f1d2c0e-7b1a-5f53-9a7e-0c5b5d1f0a11")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# LogRecord.event_name exists from OTLP 1.5 (opentelemetry-proto 1.31); older packages lack it.
_HAS_EVENT_NAME = "event_name" in LogRecord.DESCRIPTOR.fields_by_name
_SEVERITY_BANDS = ((8, "debug"), (12, "info"), (16, "warning"), (20, "error"), (24, "critical"))


@dataclass(frozen=True)
class MappedTrace:
    """The arguments of :func:`trace_service.writer.make_item` that a record provides."""

    event_key: str
    severity: str
    metadata: dict[str, Any]
    request_id: str | None
    occurred_at: datetime
    event_id: str


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as plain JSON data: string, bool, int, float, list, dict (a
    ``kvlist``; a repeated key keeps its last value), bytes as base64 text, unset as None."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def attributes(pairs: Any) -> dict[str, Any]:
    """Repeated ``KeyValue`` as a dict (a repeated key keeps its last value, as OTLP says
    receivers may)."""
    result: dict[str, Any] = {}
    pair: KeyValue
    for pair in pairs:
        result[pair.key] = any_value(pair.value)
    return result


def log_severity(number: int, text: str) -> str:
    """The PSR-3 name of a log record's severity: its number's band, or, when the number is
    unset (or outside 1-24), its text when that is a level name we know, else ``info``."""
    if 1 <= number <= 24:
        return next(name for top, name in _SEVERITY_BANDS if number <= top)
    return canonical_severity(text) if text else "info"


def span_severity(status: Status) -> str:
    """``error`` for a span whose status is ERROR, else ``info``."""
    return "error" if status.code == Status.STATUS_CODE_ERROR else "info"


def hex_id(raw: bytes) -> str:
    """A trace or span id as OTLP's JSON and W3C trace context write it: lower-case hex."""
    return raw.hex()


def time_of(nanos: int) -> datetime:
    """Nanoseconds since the epoch as an aware UTC datetime (microseconds: the table's precision)."""
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def _key(name: str, field: str) -> str:
    """``name`` as an event key, or TraceInputError naming ``field``."""
    if len(name) > MAX_KEY:
        raise TraceInputError(f"{field} is {len(name)} characters: at most {MAX_KEY}")
    if _CONTROL.search(name):
        raise TraceInputError(f"{field} holds control characters: send a printable name")
    return name


def _id(raw: bytes, size: int, field: str, required: bool) -> str | None:
    """An id as hex: None when absent (or all zeros where it is optional, as SDKs send "no
    trace"); TraceInputError naming ``field`` when it is required and absent, or of the wrong
    length."""
    if not raw:
        if required:
            raise TraceInputError(f"{field} is missing: a span needs its {size}-byte {field}")
        return None
    if len(raw) != size:
        raise TraceInputError(f"{field} is {len(raw)} bytes: it must be {size} "
                              f"({2 * size} hex characters)")
    if not any(raw):
        if required:
            raise TraceInputError(f"{field} is all zeros, which W3C trace context calls invalid")
        return None
    return hex_id(raw)


def _context(resource: Resource, scope: InstrumentationScope) -> dict[str, Any]:
    """The resource's attributes and the scope, as metadata (left out when empty)."""
    context: dict[str, Any] = {}
    if resource.attributes:
        context["resource"] = attributes(resource.attributes)
    described: dict[str, Any] = {name: value for name, value in (("name", scope.name),
                                                                  ("version", scope.version)) if value}
    if scope.attributes:
        described["attributes"] = attributes(scope.attributes)
    if described:
        context["scope"] = described
    return context


def _event_name(record: LogRecord) -> str | None:
    """The record's event name: the field (OTLP 1.5+), else the ``event.name`` attribute."""
    if _HAS_EVENT_NAME and record.event_name:
        return _key(record.event_name, "event_name")
    for pair in reversed(record.attributes):  # the last one wins, as in attributes()
        if pair.key == "event.name" and pair.value.WhichOneof("value") == "string_value":
            name = pair.value.string_value
            return _key(name, "the event.name attribute") if name else None
    return None


def log_event_id(record: LogRecord, resource: Resource, scope: InstrumentationScope) -> str:
    """The ``event_id`` of a log record: a UUID (version 5) of a SHA-256 of the record with its
    resource and scope, as their deterministic protobuf encoding. The same record sent again
    gets the same id; records that differ in anything (time, body, an attribute) do not."""
    digest = hashlib.sha256()
    for part in (resource, scope, record):
        encoded = part.SerializeToString(deterministic=True)
        digest.update(len(encoded).to_bytes(8, "big"))  # lengths: no two splits hash alike
        digest.update(encoded)
    return str(uuid.uuid5(_NAMESPACE, "log:" + digest.hexdigest()))


def span_event_id(trace_id: str, span_id: str) -> str:
    """The ``event_id`` of a span: a UUID (version 5) of its trace id and span id, which name
    one span the world over."""
    return str(uuid.uuid5(_NAMESPACE, f"span:{trace_id}:{span_id}"))


def map_log(record: LogRecord, resource: Resource, scope: InstrumentationScope,
            now_ns: int) -> MappedTrace:
    """A log record as a trace; :class:`TraceInputError` with the reason when it cannot be one.
    ``now_ns`` is the time for a record that carries none."""
    request_id = _id(record.trace_id, TRACE_ID_BYTES, "trace_id", required=False)
    span_id = _id(record.span_id, SPAN_ID_BYTES, "span_id", required=False)
    body = any_value(record.body) if record.HasField("body") else None
    key = _event_name(record)
    metadata: dict[str, Any] = {}
    if key is None:
        if isinstance(body, str) and _KEY_LIKE.fullmatch(body):
            key, body = body, None
        else:
            key = DEFAULT_LOG_KEY
    if record.attributes:
        metadata["attributes"] = attributes(record.attributes)
    if body is not None:
        metadata["body"] = body  # masked by the writer like all metadata
    if span_id is not None:
        metadata["span_id"] = span_id
    metadata.update(_context(resource, scope))
    nanos = record.time_unix_nano or record.observed_time_unix_nano or now_ns
    return MappedTrace(key, log_severity(record.severity_number, record.severity_text), metadata,
                       request_id, time_of(nanos), log_event_id(record, resource, scope))


def map_span(span: Span, resource: Resource, scope: InstrumentationScope,
             now_ns: int) -> MappedTrace:
    """A span as a trace at its end; :class:`TraceInputError` with the reason when it cannot be
    one. ``now_ns`` is the time for a span that carries neither an end nor a start."""
    if not span.name:
        raise TraceInputError("the span has no name: a span's name is its event key")
    key = _key(span.name, "the span's name")
    trace_id = _id(span.trace_id, TRACE_ID_BYTES, "trace_id", required=True)
    span_id = _id(span.span_id, SPAN_ID_BYTES, "span_id", required=True)
    parent = _id(span.parent_span_id, SPAN_ID_BYTES, "parent_span_id", required=False)
    assert trace_id is not None and span_id is not None  # required=True raised otherwise
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    metadata: dict[str, Any] = {}
    if span.attributes:
        metadata["attributes"] = attributes(span.attributes)
    if start and end:
        if end < start:
            raise TraceInputError("end_time_unix_nano is before start_time_unix_nano")
        metadata["duration_ms"] = (end - start) / 1_000_000
    metadata["kind"] = _kind(span.kind)
    metadata["span_id"] = span_id
    if parent is not None:
        metadata["parent_span_id"] = parent
    if span.status.message:
        metadata["status_message"] = span.status.message
    metadata.update(_context(resource, scope))
    return MappedTrace(key, span_severity(span.status), metadata, trace_id,
                       time_of(end or start or now_ns), span_event_id(trace_id, span_id))


def _kind(kind: int) -> str:
    """``SPAN_KIND_SERVER`` as ``server``; a number no version we know names, as its digits."""
    try:
        return Span.SpanKind.Name(kind).removeprefix("SPAN_KIND_").lower()  # type: ignore[arg-type]
    except ValueError:
        return str(kind)
