"""``application/x-www-form-urlencoded`` bodies as PHP reads them into ``$_POST`` (pure).

PHP's ``http_build_query`` writes nested arrays in bracket notation
(``metadata%5Buser%5D%5Bid%5D=5``, list items as ``[0]``, ``[1]``; hand-written forms use
``[]`` to append). :func:`parse_php_form` builds the same nesting: every value a string (as PHP
has it), ``[]`` appending the next integer index, a later scalar or array replacing an earlier
one at the same place. Limits as PHP's (``max_input_vars``, ``max_input_nesting_level``) turn
into :class:`FormError` naming the field.

Names and values must be UTF-8 once percent-decoded (``Zo%EB``, Latin-1 as an old PHP service
sends it, is not): a :class:`FormError` names the field and the byte, as the JSON body's 400
does. ``urllib.parse.parse_qsl`` would put U+FFFD in its place, storing changed client data.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from governance.errors import FormError

MAX_FIELDS = 1000   # PHP's max_input_vars default
MAX_NESTING = 64    # PHP's max_input_nesting_level default
_SEGMENT = re.compile(r"\[([^\]]*)\]")


def _path(name: str) -> list[str]:
    """``metadata[user][]`` -> ["metadata", "user", ""] ("" means: append)."""
    bracket = name.find("[")
    if bracket <= 0 or not name.endswith("]"):
        return [name]
    head, rest = name[:bracket], name[bracket:]
    segments = _SEGMENT.findall(rest)
    if "".join(f"[{s}]" for s in segments) != rest:
        return [name]  # malformed brackets: PHP keeps the raw name for the part it cannot read
    return [head, *segments]


def _next_index(container: dict[str, Any]) -> str:
    numeric = [int(k) for k in container if k.lstrip("-").isdigit()]
    return str(max(numeric) + 1 if numeric else 0)


def _unquote_plus(raw: bytes) -> bytes:
    """``urllib.parse.unquote_plus`` on bytes, to bytes: no decoding yet."""
    return unquote_to_bytes(raw.replace(b"+", b" "))


def _text(raw: bytes, field: bytes, part: str) -> str:
    """``raw`` (percent-decoded) as UTF-8, or a :class:`FormError` naming the field and byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = _unquote_plus(field).decode("utf-8", "backslashreplace")
        raise FormError(
            f"form field '{shown[:80]}': its {part} has the byte 0x{raw[exc.start]:02X} at "
            f"position {exc.start} (after percent-decoding), which is not UTF-8: send UTF-8 "
            "(PHP: mb_convert_encoding($value, 'UTF-8', 'ISO-8859-1') before http_build_query)"
        ) from None


def _pairs(body: bytes) -> list[tuple[str, str]]:
    """``parse_qsl(keep_blank_values=True)``, strict about UTF-8 instead of replacing bytes."""
    pairs = []
    for chunk in body.split(b"&"):
        if not chunk:
            continue
        name, _, value = chunk.partition(b"=")
        pairs.append((_text(_unquote_plus(name), name, "name"),
                      _text(_unquote_plus(value), name, "value")))
    return pairs


def parse_php_form(body: str | bytes) -> dict[str, Any]:
    """The nested fields of a form body, every value a string."""
    pairs = _pairs(body.encode("utf-8") if isinstance(body, str) else body)
    if len(pairs) > MAX_FIELDS:
        raise FormError(f"the form has {len(pairs)} fields: at most {MAX_FIELDS} are accepted")
    result: dict[str, Any] = {}
    for name, value in pairs:
        path = _path(name)
        if len(path) > MAX_NESTING:
            raise FormError(
                f"field {path[0]!r} is nested {len(path)} levels deep: at most {MAX_NESTING}")
        node = result
        for depth, segment in enumerate(path):
            key = _next_index(node) if segment == "" else segment
            if depth == len(path) - 1:
                node[key] = value
                break
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}  # a scalar here before is replaced, as PHP does
            node = child
    return result
