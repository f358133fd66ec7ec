"""A trace as one Redis stream entry, and back (pure).

The durable ingest path (``TRACE_QUEUE_URL``) appends each accepted trace to a Redis stream; the
consumers (``flask queue consume``) read them back and write them with the same sink as the
writer. The entry holds the trace after validation and masking: its metadata is the masked value
(so no secret reaches Redis's memory or its append-only file), and its ``event_id`` is always set
(the endpoint assigns one when the client sent none), so that a redelivered entry is a duplicate
in the table's transaction, never a second row.

The format is versioned JSON (``v``), one field (``t``) per entry: JSON because the masked
metadata is plain JSON data by construction, and a round trip through ``json`` gives back the
same ints, floats (shortest repr), strings (lone surrogates escaped) and containers.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime
from typing import Any

from governance.errors import TraceInputError
from trace_service.queue import TraceItem

VERSION = 1
FIELD = b"t"
_MS_BITS, _RANDOM_BITS = 48, 74


def new_event_id() -> str:
    """A fresh ``event_id`` for a trace the client sent without one: a UUID version 7 (RFC 9562,
    48 bits of Unix milliseconds, then 74 random bits). Its text sorts by time, so the ids the
    consumers claim land at the end of ``trace_ingest_events``'s primary key instead of at
    random places in it (uuid4), which halved what a claim costs the database (bench/consume.py)."""
    millis = time.time_ns() // 1_000_000 & ((1 << _MS_BITS) - 1)
    rand = int.from_bytes(os.urandom(10), "big") & ((1 << _RANDOM_BITS) - 1)
    value = (millis << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def encode_entry(item: TraceItem, masked_metadata: Any) -> bytes:
    """The stream entry of ``item``, whose metadata is already masked (``masked_metadata``)."""
    when = item.when
    body: dict[str, Any] = {
        "v": VERSION, "k": item.event_key, "s": item.severity, "a": item.actor_admin_id,
        "ip": item.ip_address, "ua": item.user_agent, "r": item.route_name, "q": item.request_id,
        "m": masked_metadata, "e": item.event_id,
    }
    if isinstance(when, datetime):
        body["d"] = when.isoformat()
    else:
        body["n"] = when
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def decode_entry(data: bytes) -> TraceItem:
    """The trace an entry holds; :class:`TraceInputError` naming what is wrong when it is not an
    entry of this format (the consumer parks such an entry in the dead-letter stream)."""
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TraceInputError(f"not a trace entry: {type(exc).__name__}") from None
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise TraceInputError(f"not a version {VERSION} trace entry")
    try:
        when: int | datetime = datetime.fromisoformat(body["d"]) if "d" in body else int(body["n"])
        key = body["k"]
        if type(key) is not str:
            raise TypeError("k")
        return TraceItem(key, body["s"], body["a"], body["ip"], body["ua"], body["r"], body["q"],
                         body["m"], when, body["e"])
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceInputError(f"a trace entry without a valid {exc}") from None
