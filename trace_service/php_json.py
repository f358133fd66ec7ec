"""Metadata as PHP's ``json_encode($m, JSON_THROW_ON_ERROR)`` writes it, byte for byte.

Two steps, so that what is stored never depends on what a caller does to its dict afterwards:

* :func:`snapshot` runs in the caller's thread: a deep copy taken by ``marshal.dumps`` (C speed,
  one untracked ``bytes`` object, so the hot path feeds the cyclic GC nothing). Values marshal
  refuses (subclasses, arbitrary objects) go through :func:`freeze` instead.
* :func:`encode_snapshot` runs in the writer's thread: the snapshot to the exact text PHP would
  store (``docs/php-compat.md`` §2 and §6), or ``None`` for SQL NULL.

Defined results for what PHP cannot express (PHP would throw instead):

==========================  =====================================================================
input                       result
==========================  =====================================================================
empty dict/list at top      SQL NULL (PHP stores NULL for an empty array)
non-empty list at top       an object keyed "0", "1", ... (PHP's ``(object)`` cast): the PHP
                            reader refuses a top-level list
scalar at top               :class:`MetadataError`: wrap it in a dict
empty dict nested           ``[]`` (PHP's empty array)
dict keyed 0..n-1 nested    a JSON list (PHP's packed array)
NaN, +/-Infinity            ``null`` (PHP would throw JSON_ERROR_INF_OR_NAN)
tuple                       a list
set, frozenset              a list sorted by ``repr`` (a set has no order to keep)
bytes, bytearray            text, UTF-8 decoded with U+FFFD for bad bytes
int/bool/None/float keys    "5", "1"/"0", "", truncated int (PHP array-key casts)
any other object            ``str(obj)``
nesting deeper than 512     :class:`MetadataError` (PHP's default depth; also catches cycles)
==========================  =====================================================================
"""

from __future__ import annotations

import marshal
import math
import re
from collections.abc import Callable, Mapping
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, NamedTuple, cast

from governance.errors import MetadataError
from governance.php import php_key, plain_scalar

MAX_DEPTH = 512

_SCALARS = frozenset({str, int, float, bool, type(None)})
_ascii: Callable[[str], str] = encode_basestring_ascii
_DEL_ESCAPE = re.compile(r"((?<!\\)(?:\\\\)*)\\u007f")

Frozen = dict[str, Any] | list[Any] | str | int | float | bool | None


class EncodedMetadata(NamedTuple):
    """Metadata already masked and encoded to the text PHP stores (``text`` None: SQL NULL).

    What an entry of the durable ingest path holds (``trace_service.stream_entry``): the endpoint
    masks and encodes each trace once, so the queue's consumers only write (bench/consume.py).
    ``build_row`` stores the text as it is and does not mask it again, so only code that masked
    the value before encoding it makes one.
    """

    text: str | None


def snapshot(metadata: Any) -> bytes | Frozen:
    """A deep copy of ``metadata`` that later changes to the caller's object cannot reach."""
    if not isinstance(metadata, (dict, list, tuple, Mapping)):
        raise MetadataError(
            f"metadata must be a dict (or a list), got {type(metadata).__name__}: wrap it in a dict"
        )
    try:
        return marshal.dumps(cast(Any, metadata))
    except ValueError:  # a subclass or an object marshal does not know
        return freeze(metadata)


def freeze(value: Any, depth: int = 0) -> Frozen:
    """Deep-copy ``value`` into plain JSON types (see the module table); shares no container."""
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
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=repr)
    if isinstance(value, (list, tuple)):
        return [item if type(item) in _SCALARS else freeze(item, depth + 1) for item in value]
    return plain_scalar(value)


def php_float(number: float) -> str:
    """``number`` as PHP 8 writes a float in JSON (serialize_precision -1, ``zend_gcvt``)."""
    text = repr(number)  # the shortest round-trip digits, as zend_dtoa mode 0 gives
    if "e" not in text and "n" not in text:
        # Fixed notation (1e-4 <= |x| < 1e16, and zero): the same text as PHP, but for ".0".
        return text[:-2] if text.endswith(".0") else text
    if not math.isfinite(number):
        return "null"
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


def _php_fixups(encoded: str) -> str:
    """Turn Python's ASCII JSON into PHP's: escape ``/``, leave DEL (0x7f) raw.

    Safe on a whole document: ``/`` occurs only inside strings, and a real ``\\u007f`` escape is
    one preceded by an even number of backslashes.
    """
    if "/" in encoded:
        encoded = encoded.replace("/", "\\/")
    if "\\u007f" in encoded:
        encoded = _DEL_ESCAPE.sub(lambda m: m.group(1) + "\x7f", encoded)
    return encoded


def _is_packed(obj: dict[str, Any]) -> bool:
    """True when PHP would hold these keys as a list: "0", "1", ... "n-1" in order."""
    return all(key == str(index) for index, key in enumerate(obj))


def _encode_dict(obj: dict[Any, Any], depth: int, as_object: bool) -> str:
    if depth >= MAX_DEPTH:
        raise MetadataError(f"metadata nested deeper than {MAX_DEPTH} levels (or cyclic)")
    if not obj and not as_object:
        return "[]"
    if not as_object and "0" in obj and _is_packed(obj):
        return _encode_list(list(obj.values()), depth, False)
    parts = []
    for key, item in obj.items():
        if type(key) is not str:
            # Rare: normalise every key (later duplicates win, as in PHP) and start again.
            return _encode_dict({php_key(k): v for k, v in obj.items()}, depth, as_object)
        kind = type(item)
        if kind is str:
            parts.append(_ascii(key) + ":" + _ascii(item))
        elif kind is int:
            parts.append(_ascii(key) + ":" + int.__repr__(item))
        else:
            parts.append(_ascii(key) + ":" + _encode(item, depth + 1))
    return "{" + ",".join(parts) + "}"


def _encode_list(items: list[Any] | tuple[Any, ...], depth: int, as_object: bool) -> str:
    if depth >= MAX_DEPTH:
        raise MetadataError(f"metadata nested deeper than {MAX_DEPTH} levels (or cyclic)")
    if as_object:
        return "{" + ",".join([f'"{i}":' + _encode(v, depth + 1) for i, v in enumerate(items)]) + "}"
    return "[" + ",".join([_encode(item, depth + 1) for item in items]) + "]"


def _encode(value: Any, depth: int) -> str:
    """Python-flavoured ASCII JSON with PHP's numbers and arrays; :func:`_php_fixups` finishes.

    Hot path (every stored row; bench/writer.py): types are dispatched with ``type() is``,
    strings go straight to the C ``encode_basestring_ascii``, and ints through ``int.__repr__``
    (no ``str()`` dispatch; ``type() is int`` excludes bools and IntEnums, which need PHP's
    forms). tests/trace_service/test_php_json.py holds the output to PHP's bytes."""
    kind = type(value)
    if kind is str:
        return _ascii(value)
    if kind is int:
        return int.__repr__(value)
    if kind is dict:
        return _encode_dict(value, depth, False)
    if kind is list or kind is tuple:
        return _encode_list(value, depth, False)
    if kind is float:
        return php_float(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is set or kind is frozenset:
        return _encode_list(sorted(value, key=repr), depth, False)
    if isinstance(value, Mapping):
        return _encode_dict(dict(value), depth, False)
    return _encode(plain_scalar(value), depth)


# The C encoder of the standard library (what json.dumps runs), with PHP's separators and no
# cycle check: plain metadata comes from marshal or a parsed body, which cannot hold a cycle.
_c_encode = (None if c_make_encoder is None else  # an interpreter without the C module
             c_make_encoder(None, None, encode_basestring_ascii, None, ":", ",", False, False, True))


def encode_metadata(value: Any, *, plain: bool = False) -> str | None:
    """Metadata (plain or marshal-loaded) to the text PHP stores, or ``None`` (SQL NULL).

    The top level is always a JSON object: PHP's reader refuses anything else.

    ``plain=True`` says :meth:`governance.masking.Masker.mask_plain` found the value JSON-plain
    (a dict holding nothing PHP writes differently from JSON): the C encoder then writes it,
    ~4x faster, and :func:`_php_fixups` makes PHP's escapes as on the walk's text
    (tests/trace_service/test_plain_encoding.py holds the two byte-identical).
    """
    if value is None or (isinstance(value, (dict, list, tuple)) and not value):
        return None
    if plain and _c_encode is not None:
        return _php_fixups("".join(_c_encode(value, 0)))
    try:
        if isinstance(value, dict):
            return _php_fixups(_encode_dict(value, 0, True))
        if isinstance(value, (list, tuple)):
            return _php_fixups(_encode_list(value, 0, True))
    except RecursionError:  # two frames a level: a cycle can exhaust the stack before depth 512
        raise MetadataError(f"metadata nested deeper than {MAX_DEPTH} levels (or cyclic)") from None
    raise MetadataError(
        f"metadata must be a dict (or a list), got {type(value).__name__}: wrap it in a dict"
    )


def thaw(snap: bytes | Frozen) -> Any:
    """The value a :func:`snapshot` holds (a fresh object the writer thread may own)."""
    return marshal.loads(snap) if type(snap) is bytes else snap


def encode_snapshot(snap: bytes | Frozen) -> str | None:
    """A :func:`snapshot` to the text PHP stores, or ``None`` (SQL NULL)."""
    return encode_metadata(thaw(snap))
