"""The OpenAPI 3 document of the HTTP API, served at ``GET /api/openapi.json``.

Kept beside the code it describes; ``tests/trace_service/test_openapi.py`` checks that every
documented status is produced by the endpoint and that the fuzz test's requests follow it.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_RETRY = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
_ECHO = {"X-Request-ID": {"schema": {"type": "string", "format": "uuid"},
                          "description": "The request id (a v4 UUID sent in, or a new one)"}}


def _answer(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> Any:
    return {"description": description, "headers": {**_ECHO, **(headers or {})},
            "content": {"application/json": {"schema": schema}}}


TRACE = {
    "type": "object",
    "required": ["event_key"],
    "additionalProperties": False,
    "properties": {
        "event_key": {"type": "string", "minLength": 1, "maxLength": 255,
                      "example": "auth.login.attempt"},
        "severity": {"oneOf": [{"type": "string", "maxLength": 20}, {"type": "integer"}],
                     "description": "info, warning, error, debug, critical, PSR-3 names or "
                                    "Monolog numbers; folded to what the table accepts"},
        "actor_admin_id": {"type": ["integer", "string", "null"], "description": "digits"},
        "route_name": {"type": ["string", "null"], "maxLength": 255},
        "request_id": {"type": ["string", "null"], "maxLength": 64},
        "ip_address": {"type": ["string", "null"], "description": "the original client's IP"},
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

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Telemetry trace ingest", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Trace": TRACE,
            "Error": {"type": "object", "required": ["error", "status"], "properties": {
                "error": {"type": "string"}, "status": {"type": "integer"},
                "request_id": {"type": ["string", "null"]}}},
            "Result": {"type": "object", "required": ["request_id", "accepted", "items"], "properties": {
                "request_id": {"type": "string"}, "accepted": {"type": "integer"},
                "duplicate": {"type": "integer"}, "rejected": {"type": "integer"},
                "dropped": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "index": {"type": "integer"},
                    "status": {"enum": ["accepted", "duplicate", "rejected", "dropped"]},
                    "errors": {"type": "object"}, "event_id": {"type": "string"}}}}}},
        },
    },
    "paths": {
        "/api/telemetry/traces": {"post": {
            "summary": "Post one trace, a batch, or a PHP http_build_query form",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Trace"},
                    {"type": "array", "minItems": 1, "maxItems": 500,
                     "items": {"$ref": "#/components/schemas/Trace"}}]}},
                "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/Trace"}},
            }},
            "responses": {
                "202": _answer("Accepted: per-item results", {"$ref": "#/components/schemas/Result"}),
                "400": _answer("Malformed body", _ERROR),
                "401": _answer("No or unknown key", _ERROR),
                "403": _answer("Key without the ingest scope", _ERROR),
                "413": _answer("Body or batch too large", _ERROR),
                "415": _answer("Unsupported Content-Type or Content-Encoding", _ERROR),
                "422": _answer("Nothing valid", {"$ref": "#/components/schemas/Result"}),
                "429": _answer("Rate limited", _ERROR, _RETRY),
                "503": _answer("Write queue full or database down; retry later", _ERROR, _RETRY),
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
                          "404": _answer("No such report", _ERROR)},
        }},
    },
}
