"""The job ledger (``trace_job_runs``, migration 0003): what every maintenance run did.

One row per run, written when the run ends (ok, failed, stopped, missed or a dry run). Each
row carries ``row_hash = SHA-256(prev_hash + canonical fields)`` where ``prev_hash`` is the
previous row's ``row_hash``, so an edited or deleted row breaks the chain and
:func:`verify_chain` names where. (Deleting the newest rows leaves a shorter valid chain; the
reports compare the ledger with the runs they expect.)

Hashing and verifying are pure; :func:`record_run` and :func:`read_runs` are the I/O edge.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from jobs.locks import NamedLock

LEDGER_TABLE = "trace_job_runs"
GENESIS = "0" * 64
_LOCK = "trace_job_ledger"
_COLUMNS = (
    "job", "status", "dry_run", "host", "started_at", "finished_at", "cutoff", "table_timezone",
    "rows_deleted", "first_id", "last_id", "first_time", "last_time", "partitions_created",
    "partitions_dropped", "lock_wait_ms", "details", "error",
)
# Typed columns, so datetimes and booleans bind the same way on MariaDB and SQLite.
_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "dry_run": sa.Boolean(), "started_at": sa.DateTime(), "finished_at": sa.DateTime(),
    "rows_deleted": sa.BigInteger(), "first_id": sa.BigInteger(), "last_id": sa.BigInteger(),
    "lock_wait_ms": sa.BigInteger(),
}
ledger = sa.table(LEDGER_TABLE, sa.column("id", sa.Integer()),
                  *(sa.column(name, _TYPES.get(name, sa.String())) for name in _COLUMNS),
                  sa.column("prev_hash", sa.String()), sa.column("row_hash", sa.String()))


@dataclass
class RunRecord:
    """What one run did; ``started_at``/``finished_at`` are naive UTC."""

    job: str
    status: str
    started_at: datetime
    finished_at: datetime
    dry_run: bool = False
    host: str = field(default_factory=socket.gethostname)
    cutoff: str | None = None
    table_timezone: str | None = None
    rows_deleted: int = 0
    first_id: int | None = None
    last_id: int | None = None
    first_time: str | None = None
    last_time: str | None = None
    partitions_created: str | None = None
    partitions_dropped: str | None = None
    lock_wait_ms: int = 0
    details: str | None = None
    error: str | None = None

    def fields(self) -> dict[str, Any]:
        """The stored columns, in ledger order."""
        return {name: getattr(self, name) for name in _COLUMNS}


@dataclass(frozen=True)
class LedgerRow:
    """A stored ledger row: the record, its id and its hashes."""

    id: int
    record: RunRecord
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class ChainCheck:
    """The result of :func:`verify_chain`."""

    ok: bool
    rows: int
    broken_at: int | None = None
    reason: str = ""


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    return value


def row_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """SHA-256 of the previous hash and the row's fields in a canonical JSON form."""
    body = json.dumps({k: _canonical(fields[k]) for k in _COLUMNS}, sort_keys=True,
                      ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def verify_chain(rows: Iterable[LedgerRow]) -> ChainCheck:
    """Check every row's hash and its link to the row before it (rows in id order)."""
    prev, count = GENESIS, 0
    for row in rows:
        count += 1
        if row.prev_hash != prev:
            return ChainCheck(False, count, row.id, "its prev_hash is not the previous row's "
                              "hash: a row before it was deleted or edited")
        if row_hash(row.prev_hash, row.record.fields()) != row.row_hash:
            return ChainCheck(False, count, row.id, "its content does not match its hash: "
                              "the row was edited")
        prev = row.row_hash
    return ChainCheck(True, count)


def record_run(engine: Engine, record: RunRecord) -> LedgerRow:
    """Append ``record`` to the ledger, chained to the newest row, and return the stored row."""
    fields = record.fields()
    # Two runs ending together must not both chain to the same predecessor.
    with NamedLock(engine, _LOCK, timeout=10) as held:
        if not held:
            raise TimeoutError("the job ledger lock was not free within 10 s")
        with engine.begin() as conn:
            prev = conn.execute(
                sa.select(ledger.c.row_hash).order_by(ledger.c.id.desc()).limit(1)).scalar()
            prev = prev or GENESIS
            digest = row_hash(prev, fields)
            result = conn.execute(ledger.insert().values(**fields, prev_hash=prev, row_hash=digest))
            row_id = int(result.lastrowid)
    return LedgerRow(row_id, record, prev, digest)


def read_runs(engine: Engine, job: str | None = None, since: datetime | None = None,
              until: datetime | None = None, limit: int | None = None) -> list[LedgerRow]:
    """Ledger rows in id order, optionally one job's and started within ``[since, until)`` UTC.

    With ``limit``, the newest ``limit`` rows (still returned oldest first)."""
    query = sa.select(ledger)
    if job is not None:
        query = query.where(ledger.c.job == job)
    if since is not None:
        query = query.where(ledger.c.started_at >= since)
    if until is not None:
        query = query.where(ledger.c.started_at < until)
    query = query.order_by(ledger.c.id.desc()).limit(limit) if limit else query.order_by(ledger.c.id)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return sorted((_row(row) for row in rows), key=lambda r: r.id)


def _row(row: sa.RowMapping) -> LedgerRow:
    values = {name: row[name] for name in _COLUMNS}
    values["dry_run"] = bool(values["dry_run"])
    return LedgerRow(int(row["id"]), RunRecord(**values), row["prev_hash"], row["row_hash"])


def details_json(values: Mapping[str, Any]) -> str:
    """The ``details`` column: compact JSON with sorted keys (stable for hashing)."""
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":"), default=str)

