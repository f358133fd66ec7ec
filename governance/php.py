"""Value conversions that both the masker and the PHP metadata encoder need, in one place."""

from __future__ import annotations

import math
from typing import Any


def php_key(key: object) -> str:
    """A dict key as PHP would have it as an array key, as a string.

    PHP casts array keys: bool -> 0/1, null -> "", float -> truncated int; strings stay.
    """
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
    if isinstance(key, (bytes, bytearray)):
        return bytes(key).decode("utf-8", "replace")
    return str(key)


def plain_scalar(value: Any) -> str | int | float | bool:
    """A value that is not a container, as a plain scalar: bytes decoded (U+FFFD for bad
    bytes), subclasses (IntEnum, str-Enum, ...) reduced to their base type, anything else its
    ``str()``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    return str(value)
