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
import re
import uuid
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


def _parse_timestamp(value: str) -> datetime:
    """ISO 8601 or ``Y-m-d H:i:s[.u]``, or :class:`ValueError`: one conversion for both paths."""
    return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))


class Timestamp(fields.Field[Any]):
    """ISO 8601 or ``Y-m-d H:i:s[.u]``; naive means the table's zone."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise ValidationError("must be a date-time string such as 2026-11-24 07:17:13.739142")
        try:
            return _parse_timestamp(value)
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
_CONTROLS = r"\x00-\x1f\x7f"  # the one definition: the schema's rule and the fast path's check
_PRINTABLE = validate.Regexp(rf"^[^{_CONTROLS}]*\Z",  # \Z: "$" passes a final newline
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

_FIELD_NAMES = frozenset(TRACE_SCHEMA.load_fields)
# The characters _PRINTABLE refuses: a name with any of them is declined.
_CONTROL = re.compile(f"[{_CONTROLS}]")
# A plain dotted quad (ASCII digits, no leading zero, each 0..255) is an address ipaddress takes;
# matching it costs a tenth of ip_address(), which still judges everything else.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
# Up to 10 ASCII digits is every id up to MAX_ACTOR_ID; longer (zero-padded) ones go to marshmallow.
_MAX_ID_DIGITS = len(str(MAX_ACTOR_ID))


def _plain_name(value: Any, min_length: int, max_length: int) -> bool:
    """A str (not bytes, not a subclass) within the length, with no control character."""
    return (type(value) is str and min_length <= len(value) <= max_length
            and _CONTROL.search(value) is None)


def _fast_load(item: Any) -> dict[str, Any] | None:
    """What ``TRACE_SCHEMA.load(item)`` returns for a plainly valid trace, or None: "let
    marshmallow decide".

    marshmallow's load was the largest single cost of a single-trace POST under gunicorn (~10% of
    a worker's CPU). This handles the common shapes only (str within limits, int, dict or list
    metadata, null, canonical forms), with the conversions marshmallow's fields use, so the result
    has the same keys in the same order, equal values of the same types, and the same objects
    (``metadata`` is the posted dict itself, as marshmallow returns it). Anything it is not
    certain of it declines, never raises: marshmallow stays the authority and the only source
    of error messages.
    """
    # A dict subclass could answer get() its own way; an unknown key is an error (unknown=RAISE).
    if type(item) is not dict or not _FIELD_NAMES.issuperset(item):
        return None
    get = item.get

    event_key = get("event_key")
    if not _plain_name(event_key, 1, 255):  # also declines a missing (None) event_key
        return None

    severity = get("severity", "info")  # an explicit null is an error: declined below
    if type(severity) is str:
        if not 0 < len(severity) <= 20:
            return None
    elif type(severity) is not int:  # declines bool (an int subclass), float, null...
        return None

    actor_admin_id = get("actor_admin_id")
    if actor_admin_id is not None:
        if type(actor_admin_id) is str:
            # Digits takes ASCII digits only: " 5", "+5" and "٥" (which int() takes) are errors.
            if not (0 < len(actor_admin_id) <= _MAX_ID_DIGITS and actor_admin_id.isascii()
                    and actor_admin_id.isdigit()):
                return None
            actor_admin_id = int(actor_admin_id)  # as Integer does: "007" is 7
        elif type(actor_admin_id) is not int:  # bool is an error in Integer; floats are left
            return None
        if not 0 <= actor_admin_id <= MAX_ACTOR_ID:
            return None

    route_name = get("route_name")
    if route_name is not None and not _plain_name(route_name, 0, 255):
        return None
    request_id = get("request_id")
    if request_id is not None and not _plain_name(request_id, 0, 64):
        return None
    user_agent = get("user_agent")  # no printable rule on user_agent: only the length
    if user_agent is not None and not (type(user_agent) is str and len(user_agent) <= 4096):
        return None

    ip_address = get("ip_address")
    if ip_address is not None:
        if type(ip_address) is not str:
            return None
        if _PLAIN_IPV4.fullmatch(ip_address) is None:
            try:
                ipaddress.ip_address(ip_address)  # _ip's own check: only the verdict is used
            except ValueError:
                return None

    metadata = get("metadata")
    # Passed through as is, like Metadata does: the caller masks this very dict (owned=True).
    # A JSON string is left to Metadata, which parses it.
    if metadata is not None and not isinstance(metadata, (dict, list)):
        return None

    occurred_at = get("occurred_at")
    if occurred_at is not None:
        if type(occurred_at) is not str:
            return None
        try:
            occurred_at = _parse_timestamp(occurred_at)
        except ValueError:
            return None

    event_id = get("event_id")
    if event_id is not None:
        if type(event_id) is not str:  # bytes and UUID objects are left to fields.UUID
            return None
        try:
            event_id = uuid.UUID(event_id)  # what fields.UUID calls on a str
        except ValueError:
            return None

    # In the schema's field order, as marshmallow builds its dict.
    return {
        "event_key": event_key,
        "severity": severity,
        "actor_admin_id": actor_admin_id,
        "route_name": route_name,
        "request_id": request_id,
        "ip_address": ip_address,
        "user_agent": user_agent,
        "metadata": metadata,
        "occurred_at": occurred_at,
        "event_id": event_id,
    }


def load_trace(item: Any) -> dict[str, Any]:
    """A validated trace, or :class:`ValidationError` with messages per field."""
    if not isinstance(item, dict):
        raise ValidationError({"_item": [f"must be a JSON object, got {type(item).__name__}"]})
    fast = _fast_load(item)
    if fast is not None:
        return fast
    result: dict[str, Any] = TRACE_SCHEMA.load(item)
    return result
