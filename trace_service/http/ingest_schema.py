"""Validation of one posted trace (marshmallow): the table's columns plus ``event_id``.

Every rejected item gets marshmallow's messages per field. Values PHP sends as strings
(``"5"``) are accepted where the column is a number. ``metadata`` may be an object, a list
(PHP's ``json_encode([])`` is ``[]``: no metadata), or a JSON object in a string (PHP services
often ``json_encode`` it themselves). ``occurred_at`` takes ISO 8601 or PHP's
``Y-m-d H:i:s.u``; without a zone it is the table's wall-clock time.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate


class Metadata(fields.Field[Any]):
    """An object, a list, null, or a JSON object in a string."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else None
            except ValueError:
                raise ValidationError("must be an object (or a JSON object in a string)") from None
        if value is None or isinstance(value, (dict, list)):
            return value
        raise ValidationError(f"must be an object, got {type(value).__name__}: wrap it in an object")


class Severity(fields.Field[Any]):
    """A level name (``warning``, ``WARN``...) or Monolog's number; the writer folds it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError("must be a level name such as info, warning, error, or a number")
        if isinstance(value, str) and not 0 < len(value) <= 20:
            raise ValidationError("must be 1 to 20 characters")
        return value


class Timestamp(fields.Field[Any]):
    """ISO 8601 or ``Y-m-d H:i:s[.u]``; naive means the table's zone."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise ValidationError("must be a date-time string such as 2026-11-24 07:17:13.739142")
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                "must be ISO 8601 or Y-m-d H:i:s.u, e.g. 2026-11-24T07:17:13+02:00") from None


# Layout A's actor_admin_id is a signed INT: a larger id fails the insert after the 202 (lost).
MAX_ACTOR_ID = 2**31 - 1


class Digits(fields.Integer):
    """A whole number, or its ASCII digits as PHP sends them (``"5"``; not ``" 5"``, ``"+5"``
    or ``"٥"``, which ``int()`` would take but the OpenAPI document's pattern refuses; not
    ``2.5``, which ``int()`` would truncate)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and not (value.isascii() and value.isdigit()):
            raise ValidationError("must be a whole number or its digits, such as 7 or \"7\"")
        if isinstance(value, float) and not value.is_integer():
            # marshmallow's int() would store 2.5 as 2: client data changed, silently.
            raise ValidationError(f"must be a whole number, got {value!r}")
        return super()._deserialize(value, attr, data, **kwargs)


def _ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError("must be an IPv4 or IPv6 address") from None


# Names (event keys, route names, request ids) are printable: a control character in one is
# garbage that would break CSV reports and log lines downstream.
_PRINTABLE = validate.Regexp(r"^[^\x00-\x1f\x7f]*$",
                             error="must not contain control characters (NUL, tab, newline...): "
                                   "send a printable name")


class TraceSchema(Schema):
    """One trace as posted."""

    class Meta:
        unknown = RAISE  # a misspelt field is an error, not silently lost: put extras in metadata

    event_key = fields.String(required=True, validate=[validate.Length(1, 255), _PRINTABLE])
    severity = Severity(load_default="info")
    actor_admin_id = Digits(allow_none=True, load_default=None,
                                    validate=validate.Range(0, MAX_ACTOR_ID))
    route_name = fields.String(allow_none=True, load_default=None,
                               validate=[validate.Length(max=255), _PRINTABLE])
    request_id = fields.String(allow_none=True, load_default=None,
                               validate=[validate.Length(max=64), _PRINTABLE])
    ip_address = fields.String(allow_none=True, load_default=None, validate=_ip)
    user_agent = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=4096))
    metadata = Metadata(allow_none=True, load_default=None)
    occurred_at = Timestamp(allow_none=True, load_default=None)
    event_id = fields.UUID(allow_none=True, load_default=None)


TRACE_SCHEMA = TraceSchema()


def load_trace(item: Any) -> dict[str, Any]:
    """A validated trace, or :class:`ValidationError` with messages per field."""
    if not isinstance(item, dict):
        raise ValidationError({"_item": [f"must be a JSON object, got {type(item).__name__}"]})
    result: dict[str, Any] = TRACE_SCHEMA.load(item)
    return result
