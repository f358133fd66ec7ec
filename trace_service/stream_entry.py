"""A trace as one Redis stream entry, and back (pure).

The durable ingest path (``TRACE_QUEUE_URL``) appends each accepted trace to a Redis stream; the
consumers (``flask queue consume``) read them back and write them with the same sink as the
writer. The entry holds the trace after validation and masking: its metadata is masked (so
no secret reaches Redis's memory or its append-only file), and its ``event_id`` is always set
(the endpoint assigns one when the client sent none), so that a redelivered entry is a duplicate
in the table's transaction, never a second row.

The format is versioned JSON (``v``), one field (``t``) per entry. Version 2 holds the metadata
as the text PHP stores (``M``: masked, then encoded by ``php_json`` at the endpoint), so the
consumers do not decode, mask or encode it again; version 1 (``m``: the masked value as JSON
data) is still read, for entries queued before an upgrade. JSON round-trips the other fields
exactly: ints, strings (lone surrogates escaped) and the time.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from governance.errors import TraceInputError
from trace_service.php_json import EncodedMetadata
from trace_service.queue import TraceItem
from trace_service.random_ids import uuid7_text

VERSION = 2
FIELD = b"t"
_READABLE = (1, VERSION)


def new_event_id() -> str:
    """A fresh ``event_id`` for a trace the client sent without one: a UUID version 7 (RFC 9562,
    48 bits of Unix milliseconds, then 74 random bits). Its text sorts by time, so the ids the
    consumers claim land at the end of ``trace_ingest_events``'s primary key instead of at
    random places in it (uuid4), which halved what a claim costs the database (bench/consume.py).
    The random bits come from the process's buffer of ``os.urandom`` bytes
    (:mod:`trace_service.random_ids`), not a syscall per id."""
    return uuid7_text()


def encode_entry(item: TraceItem, metadata_text: str | None) -> bytes:
    """The stream entry of ``item``, whose metadata is ``metadata_text``: already masked and
    encoded (``php_json.encode_metadata``; None for no metadata)."""
    when = item.when
    body: dict[str, Any] = {
        "v": VERSION, "k": item.event_key, "s": item.severity, "a": item.actor_admin_id,
        "ip": item.ip_address, "ua": item.user_agent, "r": item.route_name, "q": item.request_id,
        "M": metadata_text, "e": item.event_id,
    }
    if isinstance(when, datetime):
        body["d"] = when.isoformat()
    else:
        body["n"] = when
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def decode_entry(data: bytes) -> TraceItem:
    """The trace an entry holds; :class:`TraceInputError` naming what is wrong when it is not an
    entry of this format (the consumer parks such an entry in the dead-letter stream).

    The metadata comes back as :class:`EncodedMetadata` (version 2), or as the masked value for
    the sink to encode (version 1)."""
    try:
        # Decoded first: json.loads of bytes guesses among UTF-8/16/32 for every entry (a
        # quarter of its time); entries are written as UTF-8, and anything else is refused.
        body = json.loads(data.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise TraceInputError(f"not a trace entry: {type(exc).__name__}") from None
    version = body.get("v") if isinstance(body, dict) else None
    if version not in _READABLE:
        raise TraceInputError(f"not a version {' or '.join(map(str, _READABLE))} trace entry")
    try:
        when: int | datetime = datetime.fromisoformat(body["d"]) if "d" in body else int(body["n"])
        key, event_id = body["k"], body["e"]
        if type(key) is not str:
            raise TypeError("k")
        if event_id is not None and type(event_id) is not str:
            raise TypeError("e")
        if version == 1:
            metadata: Any = body["m"]
        else:
            text = body["M"]
            if text is not None and type(text) is not str:
                raise TypeError("M")
            metadata = EncodedMetadata(text)
        return TraceItem(key, body["s"], body["a"], body["ip"], body["ua"], body["r"], body["q"],
                         metadata, when, event_id)
    except (KeyError, TypeError, ValueError) as exc:
        raise TraceInputError(f"a trace entry without a valid {exc}") from None
