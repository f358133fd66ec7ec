"""Request bodies of the ingest endpoint to a list of raw trace items (pure).

Accepted (``docs/php-compat.md`` §5-6): a JSON object (one trace), a JSON list (a batch), and
``application/x-www-form-urlencoded`` as PHP's ``http_build_query`` writes it. PHP's curl sends a
string body as form-urlencoded even when it is JSON, so such a body that starts with ``{`` or
``[`` is read as JSON. ``Content-Encoding: gzip`` is decompressed with a bound. Every failure is
an :class:`IngestError` carrying the HTTP status and a message that names the problem and the fix.

One rule for text in every body form, gzip or not: UTF-8, or a refusal. Invalid UTF-8 is a 400
naming the byte (and, in a form, the field, whether the byte came raw or percent-encoded),
never replaced by U+FFFD; a ``charset`` parameter other than UTF-8 (``; charset=ISO-8859-1``)
is a 415 naming it and asking for UTF-8, not a decoding.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any

from governance.errors import FormError, IngestError
from trace_service.http.forms import parse_php_form

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class BodyLimits:
    """How much a request may carry."""

    max_bytes: int = 1_048_576      # after decompression
    max_items: int = 500


def body_too_large(limit: int) -> IngestError:
    """The 413 of a body over ``TRACE_INGEST_MAX_BYTES``, as sent or once decompressed."""
    return IngestError(413, f"the body is over {limit} bytes (TRACE_INGEST_MAX_BYTES): send "
                            "smaller batches")


def decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """``raw`` as sent with ``Content-Encoding: encoding`` (none, identity or gzip), at most
    ``limit`` bytes once decompressed; :class:`IngestError` 415, 400 or 413 otherwise (also used
    by the OTLP receiver, ``trace_service.http.otlp``)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(raw) > limit:
            raise body_too_large(limit)
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise IngestError(415, f"Content-Encoding {encoding!r} is not supported: send gzip or none")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise IngestError(400, "the body is not valid gzip: check Content-Encoding") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise IngestError(413, f"the decompressed body is over {limit} bytes: send smaller batches")
    if not inflater.eof:
        raise IngestError(400, "the gzip body is truncated: send the whole stream")
    return out


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise IngestError(400, f"the JSON object has the key {key[:40]!r} twice: send it once")
        result[key] = value
    return result


MAX_INT_DIGITS = 1000


def _refuse_constant(name: str) -> Any:
    raise IngestError(400, f"{name} is not JSON: send a number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise IngestError(400, f"the number {shown} is out of range for a double: send a smaller "
                               "number, or the value as a string")
    return value


def _bounded_int(text: str) -> int:
    # Python refuses int() of more than 4300 digits with a ValueError; PHP has 64-bit integers.
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise IngestError(400, f"an integer of {len(text)} digits is too long (at most "
                               f"{MAX_INT_DIGITS}): send it as a string")
    return int(text)


# A \uD800-\uDFFF escape: only then can the decoded JSON hold a surrogate (pairs are joined).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _unpaired_surrogate(value: Any, path: str) -> str | None:
    """The path of the first string (key or value) holding an unpaired surrogate, or None."""
    if isinstance(value, str):
        return None if value.isascii() or not any("\ud800" <= c <= "\udfff" for c in value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else key  # the key's own path names a bad key too
            found = _unpaired_surrogate(key, here) or _unpaired_surrogate(item, here)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unpaired_surrogate(item, f"{path}[{index}]")
            if found:
                return found
    return None


# Built once: json.loads with hooks builds a decoder (and its C scanner) for every call, ~1.7 us
# of a single-trace request. _loads is json.loads with these hooks, its BOM check included.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant,
                            parse_float=_finite_float, parse_int=_bounded_int)


def _loads(text: str) -> Any:
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def parse_json(text: str) -> Any:
    """Strict JSON: no NaN/Infinity, no numbers out of range, no duplicate keys, bounded nesting,
    no unpaired UTF-16 surrogates (as PHP's ``json_decode``: they are not Unicode, and could
    not be stored as UTF-8)."""
    try:
        payload = _loads(text)
        if _SURROGATE_ESCAPE.search(text):
            where = _unpaired_surrogate(payload, "")
            if where is not None:
                raise IngestError(400, f"the JSON string at {ascii(where or '(body)')} holds an unpaired "
                                       "UTF-16 surrogate (\\ud800-\\udfff), which is not Unicode: send "
                                       "a valid surrogate pair or the character itself in UTF-8")
        return payload
    except RecursionError:
        raise IngestError(400, "the JSON is nested too deeply: flatten the metadata") from None
    except json.JSONDecodeError as exc:
        raise IngestError(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno} "
                               f"column {exc.colno}") from None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(400, f"the body is not valid UTF-8 at byte {exc.start}: send UTF-8") from None


def _require_utf8(content_type: str) -> None:
    """415 for a ``charset`` parameter other than UTF-8: refused rather than decoded, so that
    every body form has one rule (UTF-8, or a refusal that says so) and no client's bytes are
    read in an encoding it did not mean."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise IngestError(415, f"charset {value.strip()[:40]!r} is not supported: send the body "
                                   "in UTF-8, with charset=utf-8 or no charset")


def decode_body(
    raw: bytes, content_type: str | None, content_encoding: str | None, limits: BodyLimits
) -> tuple[list[Any], bool]:
    """The raw items of a request, and whether it was a batch (a JSON list)."""
    data = decompress(raw, content_encoding or "", limits.max_bytes)
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    _require_utf8(content_type or "")
    looks_json = data.lstrip()[:1] in (b"{", b"[")
    if mimetype in JSON_TYPES or mimetype.endswith("+json") or (
            mimetype in (FORM_TYPE, "") and looks_json):
        payload = parse_json(_text(data))
    elif mimetype == FORM_TYPE:
        try:
            # Bytes, not text: a bad byte is then named with its field (raw or percent-encoded).
            payload = parse_php_form(data)
        except FormError as exc:
            raise IngestError(400, str(exc)) from None
    else:
        raise IngestError(415, f"Content-Type {mimetype or '(none)'!r} is not supported: send "
                               f"application/json or {FORM_TYPE}")
    if isinstance(payload, dict):
        return [payload], False
    if isinstance(payload, list):
        if not payload:
            raise IngestError(422, "the batch is empty: send at least one trace")
        if len(payload) > limits.max_items:
            raise IngestError(413, f"the batch has {len(payload)} traces: at most "
                                   f"{limits.max_items} per request")
        return payload, True
    raise IngestError(400, f"the body is a JSON {type(payload).__name__}: send an object (one "
                           "trace) or a list of objects (a batch)")
