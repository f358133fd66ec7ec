"""Reading stored traces of either layout into one shape.

Rows written by PHP or by us, in layout A, B or B0, come back as :class:`StoredTrace`: the time
column as the wall-clock text PHP wrote (``YYYY-MM-DD HH:MM:SS.ffffff``), the actor as
``actor_admin_id`` (plus ``actor_type`` on layout B), and metadata both as stored text and parsed.
The leak scan (and so the reports' scan) and subject access export read rows through here;
pruning, erasure and report gathering use ``table_layout()`` for their own SQL, so no one else
spells the layouts out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trace_service.db import table_layout
from trace_service.layout import TABLE_NAME, Layout
from trace_service.values import TIMESTAMP_FORMAT


@dataclass(frozen=True)
class StoredTrace:
    """One row of ``telemetry_traces`` whatever its layout."""

    id: int
    event_key: str
    severity: str
    actor_admin_id: int | None
    actor_type: str | None
    ip_address: str | None
    user_agent: str | None
    route_name: str | None
    request_id: str | None
    metadata_text: str | None
    occurred_at: str

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The metadata parsed, as PHP's reader would see it (None for SQL NULL)."""
        return None if self.metadata_text is None else json.loads(self.metadata_text)


def _select_columns(layout: Layout) -> str:
    actor = "actor_admin_id, NULL" if layout.actor_style == "admin_id" else "actor_id, actor_type"
    return (
        f"id, event_key, severity, {actor}, ip_address, user_agent, route_name, request_id, "
        f"metadata, {layout.time_column}"
    )


def _stamp(value: Any) -> str:
    # PyMySQL returns DATETIME as datetime; SQLite returns the stored text.
    return value.strftime(TIMESTAMP_FORMAT) if isinstance(value, datetime) else str(value)


def _trace(row: Sequence[Any]) -> StoredTrace:
    """A row selected with :func:`_select_columns` as a :class:`StoredTrace`."""
    return StoredTrace(
        id=int(row[0]), event_key=row[1], severity=row[2],
        actor_admin_id=None if row[3] is None else int(row[3]), actor_type=row[4],
        ip_address=row[5], user_agent=row[6], route_name=row[7], request_id=row[8],
        metadata_text=row[9], occurred_at=_stamp(row[10]),
    )


def iter_traces(
    engine: Engine, *, after_id: int = 0, batch_size: int = 1000,
    time_from: str | None = None, time_to: str | None = None,
) -> Iterator[StoredTrace]:
    """Every stored trace with ``id > after_id`` in id order, read in keyset batches.

    ``time_from``/``time_to`` (wall-clock text, ``[from, to)``) keep only rows of that time.
    """
    layout = table_layout(engine)
    where = ["id > :after"]
    params: dict[str, object] = {"limit": batch_size}
    if time_from is not None:
        where.append(f"{layout.time_column} >= :time_from")
        params["time_from"] = time_from
    if time_to is not None:
        where.append(f"{layout.time_column} < :time_to")
        params["time_to"] = time_to
    query = sa.text(
        f"SELECT {_select_columns(layout)} FROM {TABLE_NAME} "
        f"WHERE {' AND '.join(where)} ORDER BY id LIMIT :limit"
    )
    while True:
        with engine.connect() as conn:
            rows = conn.execute(query, {**params, "after": after_id}).all()
        for row in rows:
            yield _trace(row)
        if len(rows) < batch_size:
            return
        after_id = int(rows[-1][0])


def traces_by_id(engine: Engine, ids: Iterable[int], *, batch_size: int = 500) -> Iterator[StoredTrace]:
    """The stored traces with these ids, in id order, ``batch_size`` ids per query.

    An id no longer in the table is skipped. The batches keep each ``IN (...)`` list short, as
    erasure's deletes do, however many rows one person has.
    """
    wanted = sorted(set(ids))
    layout = table_layout(engine)
    query = sa.text(
        f"SELECT {_select_columns(layout)} FROM {TABLE_NAME} WHERE id IN :ids ORDER BY id"
    ).bindparams(sa.bindparam("ids", expanding=True))
    for start in range(0, len(wanted), batch_size):
        with engine.connect() as conn:
            rows = conn.execute(query, {"ids": wanted[start:start + batch_size]}).all()
        for row in rows:
            yield _trace(row)


def read_traces(engine: Engine, *, after_id: int = 0, limit: int = 10_000) -> list[StoredTrace]:
    """Up to ``limit`` stored traces after ``after_id`` (a convenience over :func:`iter_traces`)."""
    out = []
    for trace in iter_traces(engine, after_id=after_id, batch_size=min(limit, 1000)):
        out.append(trace)
        if len(out) >= limit:
            break
    return out


def select_list(layout: Layout) -> str:
    """The column list every read of the table selects, in the order :func:`to_trace` maps it:
    for modules that write their own WHERE and ORDER BY (``trace_service.lookup``)."""
    return _select_columns(layout)


def to_trace(row: Sequence[Any]) -> StoredTrace:
    """A row selected with :func:`select_list` as a :class:`StoredTrace`."""
    return _trace(row)
