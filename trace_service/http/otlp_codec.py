"""OTLP/HTTP bodies: export requests decoded into records, answers encoded (pure).

Both encodings of the OTLP/HTTP specification (https://opentelemetry.io/docs/specs/otlp/):

* ``application/x-protobuf``: the ``Export*ServiceRequest`` messages of ``opentelemetry-proto``,
  parsed whole; a body that is not such a message is a 400.
* ``application/json``: protobuf's JSON mapping (``google.protobuf.json_format``) with OTLP's
  deviations, handled here: ``traceId``/``spanId``/``parentSpanId`` (in records and span links)
  are hex strings, not base64; 64-bit integers may be strings or numbers; unknown fields are
  ignored; enums are integers (names are read too). The body is parsed as strictly as the JSON
  ingest endpoint's (``ingest_body.parse_json``: no NaN, no duplicate keys, bounded numbers).
  The envelope (``resourceLogs`` → ``scopeLogs`` → ``logRecords``, likewise for spans) must have
  its shape, or the request is a 400; each record is then decoded on its own, so one record
  that protobuf's JSON mapping refuses (a bad id, a number that is not one) is rejected alone,
  as the answer's ``partial_success`` says, and the others are stored.

Every record comes out as a :class:`Unit`: the record with its resource and scope, or the
reason it could not be decoded. Answers are the ``Export*ServiceResponse`` (``partial_success``
set only when something was rejected) and, for 4xx/5xx, a ``google.rpc.Status``, in the
request's encoding.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.error_details_pb2 import BadRequest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from governance.errors import IngestError
from trace_service.http.ingest_body import parse_json

Encoding = Literal["protobuf", "json"]
MEDIA_TYPES: dict[Encoding, str] = {"protobuf": "application/x-protobuf", "json": "application/json"}
_ENCODINGS: dict[str, Encoding] = {media: encoding for encoding, media in MEDIA_TYPES.items()}
# What the message says of the rejected records: the first few reasons, then a count.
MAX_REASONS = 5
MAX_REASON_CHARS = 300
# google.rpc.Code for each HTTP status we answer (the spec lets clients ignore it; it helps
# someone reading a Collector's log).
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 413: 8, 415: 3, 429: 8, 500: 13, 503: 14}
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
# OTLP's hex ids, as JSON names them (camelCase, and the proto names json_format also reads).
_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id")


@dataclass(frozen=True)
class Signal:
    """What differs between ``/v1/logs`` and ``/v1/traces``."""

    name: str
    noun: str                               # "log record", "span"
    request: type[Message]
    response: type[Message]
    record: type[Message]
    fields: tuple[str, str, str]            # proto names: resource_logs, scope_logs, log_records
    json_fields: tuple[str, str, str]       # their JSON names: resourceLogs, scopeLogs, logRecords
    rejected_field: str                     # of the partial success: rejected_log_records


LOGS = Signal("logs", "log record", ExportLogsServiceRequest, ExportLogsServiceResponse, LogRecord,
              ("resource_logs", "scope_logs", "log_records"),
              ("resourceLogs", "scopeLogs", "logRecords"), "rejected_log_records")
TRACES = Signal("traces", "span", ExportTraceServiceRequest, ExportTraceServiceResponse, Span,
                ("resource_spans", "scope_spans", "spans"),
                ("resourceSpans", "scopeSpans", "spans"), "rejected_spans")


@dataclass(frozen=True)
class Unit:
    """One record of a request, with its resource and scope; ``record`` None and ``error`` the
    reason when it could not be decoded."""

    where: str                              # resourceLogs[0].scopeLogs[1].logRecords[2]
    resource: Resource
    scope: InstrumentationScope
    record: Any = None                      # LogRecord or Span
    error: str | None = None


def encoding_of(content_type: str | None) -> Encoding | None:
    """The encoding a ``Content-Type`` names, or None for one OTLP/HTTP does not define."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return _ENCODINGS.get(mimetype)


def decode(signal: Signal, data: bytes, encoding: Encoding) -> list[Unit]:
    """The records of an export request body (already decompressed); 400 :class:`IngestError`
    naming the problem when the body is not such a request."""
    if encoding == "protobuf":
        return list(_protobuf_units(signal, data))
    return list(_json_units(signal, data))


def _protobuf_units(signal: Signal, data: bytes) -> Iterator[Unit]:
    try:
        request = signal.request.FromString(data)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise IngestError(400, f"the body is not a protobuf {signal.request.__name__}: {exc} "
                               f"(send Content-Type: application/json for OTLP's JSON)") from None
    outer, middle, inner = signal.fields
    jouter, jmiddle, jinner = signal.json_fields
    for i, resource_group in enumerate(getattr(request, outer)):
        for j, scope_group in enumerate(getattr(resource_group, middle)):
            for k, record in enumerate(getattr(scope_group, inner)):
                yield Unit(f"{jouter}[{i}].{jmiddle}[{j}].{jinner}[{k}]", resource_group.resource,
                           scope_group.scope, record)


def _json_units(signal: Signal, data: bytes) -> Iterator[Unit]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(400, f"the body is not valid UTF-8 at byte {exc.start}: send UTF-8") from None
    payload = parse_json(text)
    if not isinstance(payload, dict):
        raise IngestError(400, f"the body is a JSON {type(payload).__name__}: send an "
                               f"{signal.request.__name__} object")
    outer, middle, inner = signal.json_fields
    snake_outer, snake_middle, snake_inner = signal.fields
    for i, group in enumerate(_list(payload, outer, snake_outer, "")):
        where = f"{outer}[{i}]"
        resource, resource_error = _message(_object(group, "resource", "resource", where),
                                            Resource(), f"{where}.resource")
        for j, scope_group in enumerate(_list(group, middle, snake_middle, where)):
            here = f"{where}.{middle}[{j}]"
            scope, scope_error = _message(_object(scope_group, "scope", "scope", here),
                                          InstrumentationScope(), f"{here}.scope")
            for k, item in enumerate(_list(scope_group, inner, snake_inner, here)):
                error = resource_error or scope_error
                record = None
                if error is None:
                    record, error = _record(item, signal)
                yield Unit(f"{here}.{inner}[{k}]", resource, scope, record, error)


def _path(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _field(obj: dict[str, Any], name: str, proto_name: str, where: str) -> Any:
    """A field by its JSON name, or by its proto name (json_format reads both: a client that
    sends ``resource_logs`` is read, not silently answered with nothing stored)."""
    if name in obj and proto_name != name and proto_name in obj:
        raise IngestError(400, f"{_path(where, name)} is sent twice, also as {proto_name}: "
                               f"send {name} only")
    return obj.get(name, obj.get(proto_name))


def _list(obj: dict[str, Any], name: str, proto_name: str, where: str) -> list[dict[str, Any]]:
    """A list of objects (absent or null: empty); 400 :class:`IngestError` for another shape."""
    value = _field(obj, name, proto_name, where)
    if value is None:
        return []
    if not isinstance(value, list):
        raise IngestError(400, f"{_path(where, name)} is a JSON {type(value).__name__}: send a "
                               "list of objects")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise IngestError(400, f"{_path(where, name)}[{index}] is a JSON "
                                   f"{type(item).__name__}: send an object")
    return value


def _object(obj: dict[str, Any], name: str, proto_name: str, where: str) -> dict[str, Any] | None:
    value = _field(obj, name, proto_name, where)
    if value is not None and not isinstance(value, dict):
        raise IngestError(400, f"{_path(where, name)} is a JSON {type(value).__name__}: send an "
                               "object")
    return value


def _message(value: dict[str, Any] | None, message: Any, where: str) -> tuple[Any, str | None]:
    """``value`` parsed into ``message`` by protobuf's JSON mapping, and the reason when it
    could not be (its records are then rejected, the request is not)."""
    if value is None:
        return message, None
    try:
        json_format.ParseDict(value, message, ignore_unknown_fields=True)
    except Exception as exc:  # json_format's errors are client data: a rejection, never a 500
        return type(message)(), _reason(where, exc)
    return message, None


def _record(item: dict[str, Any], signal: Signal) -> tuple[Any, str | None]:
    try:
        converted = _hex_ids(item)
    except ValueError as exc:
        return None, str(exc)
    record = signal.record()
    try:
        json_format.ParseDict(converted, record, ignore_unknown_fields=True)
    except Exception as exc:  # json_format's errors are client data: a rejection, never a 500
        return None, _reason("", exc)
    return record, None


def _hex_ids(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of a record with its hex ids (and its links' ids) as the base64 json_format reads;
    ValueError naming the field when one is not hex."""
    converted = dict(item)
    for name in _ID_FIELDS:
        if name in converted:
            converted[name] = hex_to_base64(converted[name], name)
    links = converted.get("links")
    if isinstance(links, list):
        converted["links"] = [_hex_ids(link) if isinstance(link, dict) else link for link in links]
    return converted


def hex_to_base64(value: Any, name: str = "id") -> str:
    """An OTLP JSON id (case-insensitive hex) as base64; ValueError when it is not hex."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        shown = type(value).__name__ if not isinstance(value, str) else "not an even run of hex digits"
        raise ValueError(f"{name} must be a hex string (OTLP JSON does not use base64 for ids): "
                         f"{shown}")
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _reason(where: str, exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    text = text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "…"
    return f"{where}: {text}" if where else text


def rejection_message(signal: Signal, reasons: list[str], total: int) -> str:
    """The ``error_message`` of a partial success: how many were rejected, and why (the first
    :data:`MAX_REASONS` reasons, each naming its record)."""
    shown = "; ".join(reasons[:MAX_REASONS])
    more = f"; and {len(reasons) - MAX_REASONS} more" if len(reasons) > MAX_REASONS else ""
    return (f"rejected {len(reasons)} of {total} {signal.noun}s, which were not stored: "
            f"{shown}{more}")


def encode_response(signal: Signal, rejected: int, message: str, encoding: Encoding) -> bytes:
    """The ``Export*ServiceResponse``: empty on full success; ``partial_success`` with the count
    and the message when ``rejected`` records were not stored."""
    response: Any = signal.response()
    if rejected:
        setattr(response.partial_success, signal.rejected_field, rejected)
        response.partial_success.error_message = message
    return encode(response, encoding)


def encode_status(http_status: int, message: str, encoding: Encoding) -> bytes:
    """The ``google.rpc.Status`` body of a 4xx/5xx answer; a 400 carries the message again as
    a ``google.rpc.BadRequest`` detail, as the specification recommends."""
    status = Status(code=_GRPC_CODES.get(http_status, 2), message=message)
    if http_status == 400:
        status.details.add().Pack(BadRequest(field_violations=[
            BadRequest.FieldViolation(field="body", description=message)]))
    return encode(status, encoding)


def encode(message: Message, encoding: Encoding) -> bytes:
    """``message`` in ``encoding``: protobuf's binary form, or OTLP's JSON (camelCase names,
    integer enums, 64-bit integers as strings)."""
    if encoding == "protobuf":
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None, use_integers_for_enums=True).encode()
