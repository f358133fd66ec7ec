"""The OpenAPI 3 document of the HTTP API, served at ``GET /api/openapi.json``.

Kept beside the code it describes; ``tests/trace_service/http/test_openapi_conformance.py`` runs
schemathesis against the live app so that every answer conforms to it, and
``tests/trace_service/http/test_ingest.py`` checks that every documented status is produced.
"""

from __future__ import annotations

from typing import Any

from trace_service.http import otlp_openapi
from trace_service.lookup import DEFAULT_LIMIT, MAX_ID, MAX_LIMIT, MAX_TEXT, WALL_TIME_PATTERN

_ERROR = {"$ref": "#/components/schemas/Error"}
_RETRY = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
_ECHO = {"X-Request-ID": {"schema": {"type": "string", "format": "uuid"},
                          "description": "The request id (a v4 UUID sent in, or a new one)"}}


def _answer(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> Any:
    return {"description": description, "headers": {**_ECHO, **(headers or {})},
            "content": {"application/json": {"schema": schema}}}


# What trace_service.http.ingest_schema accepts, as far as JSON Schema can say it. What it cannot
# (a JSON object inside a metadata string, a real calendar date in occurred_at) is refused per
# item with field errors in the 202/422 Result.
_PRINTABLE = "^[^\\u0000-\\u001f\\u007f]*$"  # no control characters: they break CSV and log lines
_DIGITS = "^[0-9]{1,9}$"                         # PHP's ctype_digit, within layout A's INT
_IP = [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]
_NULL = {"type": "null"}

TRACE = {
    "type": "object",
    "required": ["event_key"],
    "additionalProperties": False,
    "properties": {
        "event_key": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _PRINTABLE,
                      "example": "auth.login.attempt"},
        "severity": {"oneOf": [{"type": "string", "minLength": 1, "maxLength": 20},
                               {"type": "integer"}],
                     "description": "info, warning, error, debug, critical, PSR-3 names or "
                                    "Monolog numbers; folded to what the table accepts"},
        "actor_admin_id": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
                                     {"type": "string", "pattern": _DIGITS}, _NULL],
                           "description": "a whole number, or its ASCII digits as PHP sends them"},
        "route_name": {"type": ["string", "null"], "maxLength": 255, "pattern": _PRINTABLE},
        "request_id": {"type": ["string", "null"], "maxLength": 64, "pattern": _PRINTABLE},
        "ip_address": {"anyOf": [*_IP, _NULL], "description": "the original client's IP"},
        "user_agent": {"type": ["string", "null"], "maxLength": 4096},
        "metadata": {"type": ["object", "array", "string", "null"],
                     "description": "an object (masked before storage); a JSON object in a "
                                    "string is accepted; [] means none"},
        "occurred_at": {"type": ["string", "null"],
                        "description": "ISO 8601 or Y-m-d H:i:s.u; no zone = the table's zone"},
        "event_id": {"type": ["string", "null"], "format": "uuid",
                     "description": "idempotency: a repeat within the window is not stored twice"},
    },
}

# A form (PHP's http_build_query) carries strings only: PHP leaves null out, and metadata is
# bracket notation (metadata[user][id]=5), an object of strings and such objects.
_FORM_VALUE = {"anyOf": [{"type": "string"},
                         {"type": "object", "additionalProperties": {"type": "string"}}]}
TRACE_FORM = {
    "type": "object",
    "required": ["event_key"],
    "additionalProperties": False,
    "properties": {
        "event_key": TRACE["properties"]["event_key"],  # type: ignore[index]
        "severity": {"type": "string", "minLength": 1, "maxLength": 20},
        "actor_admin_id": {"type": "string", "pattern": _DIGITS},
        "route_name": {"type": "string", "maxLength": 255, "pattern": _PRINTABLE},
        "request_id": {"type": "string", "maxLength": 64, "pattern": _PRINTABLE},
        "ip_address": {"anyOf": _IP},
        "user_agent": {"type": "string", "maxLength": 4096},
        "metadata": {"type": "object", "additionalProperties": _FORM_VALUE},
        "occurred_at": {"type": "string"},
        "event_id": {"type": "string", "format": "uuid"},
    },
}

# The lookup's answers (trace_service/http/traces_view.py, trace_service/lookup.py). The
# parameters say exactly what the lookup accepts (a 400 for anything else), calendar dates
# included: WALL_TIME_PATTERN admits real dates only.
_NULLABLE_TEXT = {"type": ["string", "null"]}
STORED_TRACE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "occurred_at", "severity", "event_key", "actor_admin_id", "actor_type",
                 "request_id", "route_name", "ip_address", "user_agent", "metadata",
                 "metadata_text"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "occurred_at": {"type": "string", "description": "the time column (created_at on layout "
                                                          "A) as the table's wall-clock text"},
        "severity": {"type": "string"},
        "event_key": {"type": "string"},
        "actor_admin_id": {"type": ["integer", "null"],
                           "description": "the actor's id (actor_id on layout B)"},
        "actor_type": {"type": ["string", "null"],
                       "description": "layout B only (admin, system...); null on A and B0"},
        "request_id": _NULLABLE_TEXT, "route_name": _NULLABLE_TEXT,
        "ip_address": _NULLABLE_TEXT, "user_agent": _NULLABLE_TEXT,
        "metadata": {"description": "metadata_text parsed (null when NULL or not JSON)"},
        "metadata_text": {"type": ["string", "null"],
                          "description": "the metadata as stored (masked when it was written)"},
    },
}
TRACE_PAGE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["items", "next_before_id"],
    "properties": {
        "items": {"type": "array", "maxItems": MAX_LIMIT,
                  "items": {"$ref": "#/components/schemas/StoredTrace"}},
        "next_before_id": {"type": ["integer", "null"], "minimum": 1,
                           "description": "before_id of the next page; null on the last"},
    },
}
_TEXT_FILTER = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
_WALL_TIME = {"type": "string", "pattern": WALL_TIME_PATTERN,
              "description": "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS[.ffffff]] (a space for the T "
                             "too) on the table's wall clock (TRACE_TABLE_TIMEZONE)"}
_TRACE_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_LOOKUP_REFUSALS = {
    "401": _answer("No or unknown key", _ERROR),
    "403": _answer("Key without traces:read", _ERROR),
    "429": _answer("Rate limited", _ERROR, _RETRY),
    "503": _answer("The database did not answer: retry, or narrow the lookup", _ERROR, _RETRY),
}
TRACES_LIST = {
    "summary": "Stored traces matching every filter given, newest first, a keyset page at a time",
    "security": [{"bearer": []}],
    "parameters": [
        {"name": "request_id", "in": "query", "schema": _TEXT_FILTER},
        {"name": "event_key", "in": "query", "schema": _TEXT_FILTER,
         "description": "a glob: * any run of characters, ? one, anything else itself; ASCII "
                        "case is ignored, as the table's collation does"},
        {"name": "actor_id", "in": "query", "schema": {"type": "integer", "minimum": 0,
                                                        "maximum": MAX_ID}},
        {"name": "since", "in": "query", "schema": _WALL_TIME, "description": "included"},
        {"name": "until", "in": "query", "schema": _WALL_TIME, "description": "not included"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                     "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
        {"name": "before_id", "in": "query", "schema": _TRACE_ID,
         "description": "the next_before_id of the page before"},
    ],
    "responses": {"200": _answer("A page", {"$ref": "#/components/schemas/TracePage"}),
                  "400": _answer("A parameter's value is invalid, or the parameter unknown", _ERROR),
                  **_LOOKUP_REFUSALS},
}
TRACE_SHOW = {
    "summary": "One stored trace",
    "security": [{"bearer": []}],
    "parameters": [{"name": "id", "in": "path", "required": True, "schema": _TRACE_ID}],
    "responses": {"200": _answer("The trace", {"$ref": "#/components/schemas/StoredTrace"}),
                  "400": _answer("The id is not a trace id", _ERROR),
                  "404": _answer("No such trace", _ERROR),
                  **_LOOKUP_REFUSALS},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Telemetry trace ingest", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Trace": TRACE,
            "TraceForm": TRACE_FORM,
            "StoredTrace": STORED_TRACE,
            "TracePage": TRACE_PAGE,
            **otlp_openapi.SCHEMAS,
            "Error": {"type": "object", "required": ["error", "status"], "properties": {
                "error": {"type": "string"}, "status": {"type": "integer"},
                "request_id": {"type": ["string", "null"]}}},
            "Result": {"type": "object", "required": ["request_id", "accepted", "items"], "properties": {
                "request_id": {"type": "string"}, "accepted": {"type": "integer"},
                "duplicate": {"type": "integer"}, "rejected": {"type": "integer"},
                "dropped": {"type": "integer"}, "discarded": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "index": {"type": "integer"},
                    "status": {"enum": ["accepted", "duplicate", "rejected", "dropped", "discarded"],
                               "description": "duplicate: a trace with this event_id is already "
                                              "stored (the first copy was committed); a copy "
                                              "answered accepted is stored at most once per "
                                              "event_id; discarded: kept out on purpose (see "
                                              "reason), not an error: do not retry"},
                    "reason": {"enum": ["sampled_out", "disabled", "opted_out"],
                               "description": "why a discarded item was not stored: the "
                                              "sampling policy, telemetry switched off, or the "
                                              "person it is about opted out"},
                    "errors": {"type": "object"}, "event_id": {"type": "string"}}}}}},
        },
    },
    "paths": {
        "/api/telemetry/traces": {"get": TRACES_LIST, "post": {
            "summary": "Post one trace, a batch, or a PHP http_build_query form",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Trace"},
                    {"type": "array", "minItems": 1, "maxItems": 500,
                     "items": {"$ref": "#/components/schemas/Trace"}}]}},
                "application/x-www-form-urlencoded": {
                    "schema": {"$ref": "#/components/schemas/TraceForm"}},
            }},
            "responses": {
                "202": _answer("Accepted: per-item results", {"$ref": "#/components/schemas/Result"}),
                "400": _answer("Malformed body", _ERROR),
                "401": _answer("No or unknown key", _ERROR),
                "403": _answer("Key without the ingest scope", _ERROR),
                "408": _answer("The body did not arrive within TRACE_INGEST_BODY_SECONDS (gevent "
                               "workers); nothing was stored", _ERROR),
                "413": _answer("Body or batch too large", _ERROR),
                "415": _answer("Unsupported Content-Type or Content-Encoding", _ERROR),
                # Every item rejected: a Result with their errors; an empty batch: an Error.
                "422": _answer("Nothing valid", {"anyOf": [{"$ref": "#/components/schemas/Result"},
                                                           _ERROR]}),
                "429": _answer("Rate limited", _ERROR, _RETRY),
                "503": _answer("Write queue full, database down, or the Redis queue full or not "
                               "answering; nothing was stored: retry later (the message says when "
                               "Redis's reply was lost and the traces may have been stored: a "
                               "retry stores them once only with their own event_id)",
                               _ERROR, _RETRY),
            },
        }},
        "/healthz": {"get": {"responses": {"200": {"description": "The process is up"}}}},
        "/readyz": {"get": {"responses": {"200": {"description": "Ready"},
                                          "503": {"description": "Database or table missing"}}}},
        "/metrics": {"get": {"responses": {"200": {"description": "Prometheus text format"}}}},
        "/reports": {"get": {
            "summary": "Stored compliance reports, newest first (JSON, or HTML for browsers)",
            "security": [{"bearer": []}],
            "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                      "maximum": 1000, "default": 100}}],
            "responses": {"200": {"description": "The listing"}, "400": _answer("Bad limit", _ERROR),
                          "401": _answer("No or unknown key", _ERROR),
                          "403": _answer("Key without reports:read", _ERROR),
                          "429": _answer("Rate limited", _ERROR, _RETRY)},
        }},
        "/reports/{id}": {"get": {
            "summary": "One report: the stored JSON byte for byte (HTML for browsers); "
                       "/reports/{id}.json, .csv or .html name a form",
            "security": [{"bearer": []}],
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": {"description": "The report", "headers": {"X-Content-SHA256": {
                              "schema": {"type": "string"}, "description": "The stored SHA-256"}}},
                          "401": _answer("No or unknown key", _ERROR),
                          "403": _answer("Key without reports:read", _ERROR),
                          "404": _answer("No such report", _ERROR),
                          "429": _answer("Rate limited", _ERROR, _RETRY)},
        }},
        "/api/telemetry/traces/{id}": {"get": TRACE_SHOW},
        **otlp_openapi.paths(_ECHO, _RETRY),
    },
}
