"""The OTLP/HTTP receiver's part of the OpenAPI document (``trace_service.http.openapi``).

The JSON request schemas constrain exactly what the receiver refuses with a 400, the shape of
the envelope (``resourceLogs`` → ``scopeLogs`` → ``logRecords``: lists of objects, or null),
and describe the rest without constraining it: inside a resource, a scope or a record, what
protobuf's JSON mapping refuses rejects those records alone (``partial_success`` in a 200), and
unknown fields are ignored, as OTLP requires of receivers. Binary protobuf bodies are described
as such; the messages are opentelemetry-proto's.
"""

from __future__ import annotations

from typing import Any

_REF = "#/components/schemas/"
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_STATUS = {"$ref": _REF + "OtlpStatus"}
_NULLABLE_LIST, _NULLABLE_OBJECT = ["array", "null"], ["object", "null"]

_ID = ("lower- or upper-case hex, not base64 (OTLP JSON): a trace id is 32 characters, a span "
       "id 16; another length rejects the record")
_NANOS = "nanoseconds since the Unix epoch, a decimal string or a number"
_ANY_VALUE = ("an AnyValue: one of stringValue, boolValue, intValue (a decimal string), "
              "doubleValue, arrayValue {values}, kvlistValue {values}, bytesValue (base64)")
_ATTRIBUTES = "a list of {key, value: AnyValue}; stored in the trace's metadata, masked"

LOG_RECORD = {
    "type": "object",
    "description": "One log record: one trace (README, 'OTLP/HTTP'). A record protobuf's JSON "
                   "mapping refuses, or that cannot be a trace, is rejected alone.",
    "properties": {
        "timeUnixNano": {"description": f"{_NANOS}: the trace's time"},
        "observedTimeUnixNano": {"description": f"{_NANOS}: the time when timeUnixNano is unset"},
        "severityNumber": {"description": "1-8 debug, 9-12 info, 13-16 warning, 17-20 error, "
                                          "21-24 critical (an integer)"},
        "severityText": {"description": "used when severityNumber is unset, if a level name"},
        "body": {"description": f"{_ANY_VALUE}; a short key-like string is the event key"},
        "eventName": {"description": "the event key (at most 255 characters)"},
        "attributes": {"description": _ATTRIBUTES},
        "traceId": {"description": f"{_ID}; the trace's request_id"},
        "spanId": {"description": _ID},
        "flags": {"description": "W3C trace flags"},
        "droppedAttributesCount": {"description": "ignored"},
    },
}
SPAN = {
    "type": "object",
    "description": "One span: one trace at its end. A span protobuf's JSON mapping refuses, or "
                   "without a name, a 16-byte trace id or an 8-byte span id, is rejected alone.",
    "properties": {
        "name": {"description": "the event key (1 to 255 characters)"},
        "traceId": {"description": f"{_ID}; the trace's request_id"},
        "spanId": {"description": _ID},
        "parentSpanId": {"description": _ID},
        "kind": {"description": "an integer (SpanKind)"},
        "startTimeUnixNano": {"description": _NANOS},
        "endTimeUnixNano": {"description": f"{_NANOS}: the trace's time"},
        "attributes": {"description": _ATTRIBUTES},
        "status": {"description": "{code, message}: code 2 (ERROR) is severity error"},
        "events": {"description": "ignored"},
        "links": {"description": "ignored (their ids are hex too)"},
    },
}


def _request(outer: str, middle: str, inner: str, record: str) -> dict[str, Any]:
    scope_group = {"type": "object", "properties": {
        "scope": {"type": _NULLABLE_OBJECT, "description": "name, version, attributes"},
        inner: {"type": _NULLABLE_LIST, "items": {"$ref": _REF + record}}}}
    resource_group = {"type": "object", "properties": {
        "resource": {"type": _NULLABLE_OBJECT, "description": f"attributes: {_ATTRIBUTES}"},
        middle: {"type": _NULLABLE_LIST, "items": scope_group}}}
    return {"type": "object", "properties": {outer: {"type": _NULLABLE_LIST, "items": resource_group}}}


def _response(counted: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"partialSuccess": {
        "type": "object",
        "description": "set only when records were rejected (not stored); the exporter must not "
                       "retry. Sampled-out, switched-off and opted-out records are not rejections",
        "properties": {counted: {"type": "string", "pattern": "^[0-9]+$",
                                 "description": "how many (int64: a decimal string)"},
                       "errorMessage": {"type": "string",
                                        "description": "each rejected record's path and problem"}}}}}


SCHEMAS: dict[str, Any] = {
    "OtlpLogRecord": LOG_RECORD,
    "OtlpSpan": SPAN,
    "ExportLogsServiceRequest": _request("resourceLogs", "scopeLogs", "logRecords", "OtlpLogRecord"),
    "ExportTraceServiceRequest": _request("resourceSpans", "scopeSpans", "spans", "OtlpSpan"),
    "ExportLogsServiceResponse": _response("rejectedLogRecords"),
    "ExportTraceServiceResponse": _response("rejectedSpans"),
    "OtlpStatus": {"type": "object", "description": "google.rpc.Status", "properties": {
        "code": {"type": "integer", "description": "google.rpc.Code; clients need not read it"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"},
                    "description": "a 400 carries a google.rpc.BadRequest"}}},
}


def paths(echo: dict[str, Any], retry: dict[str, Any]) -> dict[str, Any]:
    """``/v1/logs`` and ``/v1/traces``; ``echo`` and ``retry`` are the document's X-Request-ID
    and Retry-After headers."""
    def answer(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None,
               protobuf: bool = True) -> dict[str, Any]:
        content: dict[str, Any] = {"application/json": {"schema": schema}}
        if protobuf:
            content["application/x-protobuf"] = _BINARY
        return {"description": description, "headers": {**echo, **(headers or {})},
                "content": content}

    def operation(signal: str, request: str, response: str) -> dict[str, Any]:
        return {"post": {
            "summary": f"OTLP/HTTP export of {signal}: each one a trace (README, 'OTLP/HTTP')",
            "description": "Answered in the request's encoding (protobuf or JSON). "
                           "Content-Encoding: gzip is accepted.",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {
                "application/x-protobuf": _BINARY,
                "application/json": {"schema": {"$ref": _REF + request}}}},
            "responses": {
                "200": answer("Stored, discarded on purpose, or partly rejected "
                              "(partialSuccess)", {"$ref": _REF + response}),
                "400": answer("The body is not an export request", _STATUS),
                "401": answer("No or unknown key", _STATUS),
                "403": answer("Key without the ingest scope", _STATUS),
                "408": answer("The body did not arrive within TRACE_INGEST_BODY_SECONDS (gevent "
                              "workers); nothing was stored", _STATUS),
                "413": answer("Body over TRACE_INGEST_MAX_BYTES (after decompression too)", _STATUS),
                "415": answer("Another Content-Type, or a Content-Encoding other than gzip",
                              _STATUS),
                "429": answer("Rate limited", _STATUS, retry),
                "503": answer("Write queue full, database down, or the Redis queue full or not "
                              "answering; nothing was stored: retry later", _STATUS, retry),
            },
        }}

    return {"/v1/logs": operation("log records", "ExportLogsServiceRequest",
                                  "ExportLogsServiceResponse"),
            "/v1/traces": operation("spans", "ExportTraceServiceRequest",
                                    "ExportTraceServiceResponse")}
