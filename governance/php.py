"""PHP's value conversions that both the masker and the metadata encoder need."""

from __future__ import annotations

import math


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
