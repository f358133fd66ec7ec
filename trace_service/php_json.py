"""Metadata as PHP's ``json_encode($m, JSON_THROW_ON_ERROR)`` writes it, byte for byte.

Two steps, so that what is stored never depends on what a caller does to its dict afterwards:

* :func:`freeze` runs in the caller's thread: a deep copy reduced to JSON types, with keys turned
  into strings the way PHP turns array keys into strings. It is the only per-call cost.
* :func:`encode_metadata` runs in the writer's thread: the frozen value to the exact bytes PHP would
  produce (``spec/php-compat.md`` §2 and §6), or ``None`` for SQL NULL.

Defined results for what PHP cannot express (PHP would throw instead):

==========================  =====================================================================
input                       result
==========================  =====================================================================
empty dict/list at top      SQL NULL (PHP stores NULL for an empty array)
non-empty list at top       an object keyed "0", "1", ... (PHP's ``(object)`` cast): the PHP
                            reader refuses a top-level list
empty dict nested           ``[]`` (PHP's empty array)
dict keyed 0..n-1 nested    a JSON list (PHP's packed array)
NaN, +/-Infinity            ``null`` (PHP would throw JSON_ERROR_INF_OR_NAN)
tuple, set, frozenset       a list
bytes, bytearray            text, UTF-8 decoded with U+FFFD for bad bytes
int/bool/None/float keys    "5", "1"/"0", "", truncated int (PHP array-key casts)
any other object            ``str(obj)``
nesting deeper than 512     :class:`MetadataError` (PHP's default depth; also catches cycles)
==========================  =====================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from trace_service.errors import TraceInputError

MAX_DEPTH = 512

_SCALARS = frozenset({str, int, float, bool, type(None)})
_ascii: Callable[[str], str] = encode_basestring_ascii

Frozen = dict[str, Any] | list[Any] | str | int | float | bool | None


class MetadataError(TraceInputError):
    """Metadata that cannot be stored: nested deeper than PHP's limit, or cyclic."""


def php_key(key: object) -> str:
    """A dict key as PHP would have it as an array key, as a string."""
    if isinstance(key, str):
        return str.__str__(key)
    if isinstance(key, bool):
        return "1" if key else "0"
    if isinstance(key, int):
        return str(int(key))
    if key is None:
        return ""
    if isinstance(key, float) and math.isfinite(key):
        return str(int(key))
    return str(key)


def freeze(value: Any, depth: int = 0) -> Frozen:
    """Deep-copy ``value`` into JSON types (see the module table); never shares a container."""
    kind = type(value)
    if kind in _SCALARS:
        return value  # type: ignore[no-any-return]
    if depth >= MAX_DEPTH:
        raise MetadataError(f"metadata nested deeper than {MAX_DEPTH} levels (or cyclic)")
    if kind is dict or isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                key = php_key(key)
            out[key] = item if type(item) in _SCALARS else freeze(item, depth + 1)
        return out
    if kind is list or kind is tuple or isinstance(value, (list, tuple, set, frozenset)):
        return [item if type(item) in _SCALARS else freeze(item, depth + 1) for item in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    # Subclasses of the scalars (IntEnum, str-Enum, numpy-free float subclasses) lose their class.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    return str(value)


def php_float(number: float) -> str:
    """``number`` as PHP 8 writes a float in JSON (serialize_precision -1, ``zend_gcvt``)."""
    if not math.isfinite(number):
        return "null"
    if number == 0.0:
        return "-0" if math.copysign(1.0, number) < 0 else "0"
    text = repr(number)  # the shortest round-trip digits, as zend_dtoa mode 0 gives
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    digits = all_digits.lstrip("0")
    # The value is 0.<digits> x 10**decpt, as zend_dtoa reports it.
    decpt = len(whole) + (int(exponent) if exponent else 0) - (len(all_digits) - len(digits))
    digits = digits.rstrip("0") or "0"
    if decpt < -3 or decpt > 17:
        power = decpt - 1
        rest = digits[1:] or "0"
        return f"{sign}{digits[0]}.{rest}e{'-' if power < 0 else '+'}{abs(power)}"
    if decpt <= 0:
        return f"{sign}0.{'0' * -decpt}{digits}"
    head = digits[:decpt].ljust(decpt, "0")
    tail = digits[decpt:]
    return f"{sign}{head}.{tail}" if tail else f"{sign}{head}"


def php_string(text: str) -> str:
    """``text`` as a PHP JSON string: ASCII with lower-case \\u escapes, ``/`` escaped, DEL raw."""
    if "\x7f" in text:
        # Python escapes DEL, PHP leaves it raw: encode around it.
        inner = "\x7f".join(_ascii(part)[1:-1] for part in text.split("\x7f"))
        encoded = f'"{inner}"'
    else:
        encoded = _ascii(text)
    return encoded.replace("/", "\\/") if "/" in encoded else encoded


def _is_packed(obj: dict[str, Any]) -> bool:
    """True when PHP would hold these keys as a list: "0", "1", ... "n-1" in order."""
    return all(key == str(index) for index, key in enumerate(obj))


def _encode(value: Frozen, as_object: bool = False) -> str:
    kind = type(value)
    if kind is str:
        return php_string(value)  # type: ignore[arg-type]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)  # type: ignore[arg-type]
    if kind is float:
        return php_float(value)  # type: ignore[arg-type]
    if value is None:
        return "null"
    if kind is dict:
        obj: dict[str, Any] = value  # type: ignore[assignment]
        if not obj and not as_object:
            return "[]"
        if not as_object and "0" in obj and _is_packed(obj):
            return "[" + ",".join(_encode(item) for item in obj.values()) + "]"
        return "{" + ",".join(php_string(k) + ":" + _encode(v) for k, v in obj.items()) + "}"
    if kind is list:
        items: list[Any] = value  # type: ignore[assignment]
        if as_object:
            return "{" + ",".join(f'"{i}":' + _encode(v) for i, v in enumerate(items)) + "}"
        return "[" + ",".join(_encode(item) for item in items) + "]"
    raise MetadataError(f"metadata holds a {kind.__name__}; pass it through freeze() first")


def encode_metadata(value: Frozen) -> str | None:
    """Frozen metadata to the bytes PHP stores, or ``None`` (SQL NULL) when it is empty.

    The top level is always a JSON object: PHP's reader refuses anything else.
    """
    if value is None or value == {} or value == []:
        return None
    if type(value) not in (dict, list):
        raise MetadataError(
            f"metadata must be a dict (or a list), got {type(value).__name__}: wrap it in a dict"
        )
    return _encode(value, as_object=True)
