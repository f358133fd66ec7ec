"""API keys for the HTTP API: created and revoked by CLI, stored as SHA-256 hashes.

A key is ``tsk_`` + 43 random URL-safe characters (256 bits), shown once at creation. The table
holds its SHA-256 (a slow hash buys nothing against 256 random bits), a short prefix to tell
keys apart in listings, a name, scopes (``ingest``: POST traces; ``reports:read``: /reports;
``traces:read``: GET traces; ``admin``: all of them), and created and revoked times. Lookups
go through a small cache (``TRACE_KEY_CACHE_SECONDS``): a revocation takes effect on every
worker within that time. Hashes are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

SCOPES = ("ingest", "reports:read", "traces:read", "admin")
PREFIX = "tsk_"
TABLE = sa.table(
    "trace_ingest_keys",
    sa.column("id"), sa.column("name"), sa.column("key_prefix"), sa.column("key_hash"),
    sa.column("scopes"), sa.column("created_at"), sa.column("revoked_at"),
)


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never the key itself)."""

    id: int
    name: str
    key_prefix: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        """Whether this key carries ``scope`` (``admin`` carries every scope)."""
        return self.revoked_at is None and (scope in self.scopes or "admin" in self.scopes)


def hash_key(token: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _row_to_key(row: sa.Row) -> ApiKey:  # type: ignore[type-arg]
    return ApiKey(int(row.id), row.name, row.key_prefix, frozenset(row.scopes.split()),
                  row.created_at, row.revoked_at)


class KeyStore:
    """Keys in the database, with a short-lived lookup cache."""

    def __init__(self, engine: Engine, cache_seconds: float = 30.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKey | None, str]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
        """A new key; returns it and the plaintext token (shown once, never stored)."""
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ValueError(f"scopes {unknown or '(none)'} are not valid: use {', '.join(SCOPES)}")
        token = PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.engine.begin() as conn:
            conn.execute(TABLE.insert().values(
                name=name, key_prefix=token[:12], key_hash=hash_key(token),
                scopes=" ".join(sorted(set(scopes))), created_at=now, revoked_at=None))
            row = conn.execute(sa.select(TABLE).where(TABLE.c.key_hash == hash_key(token))).one()
        return _row_to_key(row), token

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(TABLE).order_by(TABLE.c.id)).all()
        return [_row_to_key(row) for row in rows]

    def revoke(self, key_id: int) -> bool:
        """Revoke a key by id; False if there is no such active key."""
        now = datetime.now(UTC).replace(tzinfo=None)
        with self.engine.begin() as conn:
            done = conn.execute(TABLE.update().where(TABLE.c.id == key_id)
                                .where(TABLE.c.revoked_at.is_(None)).values(revoked_at=now))
        with self._lock:
            self._cache.clear()
        return bool(done.rowcount)

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key ``token`` is, or None."""
        digest = hash_key(token)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is None or now - cached[0] > self.cache_seconds:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(TABLE).where(TABLE.c.key_hash == digest)).first()
            cached = (now, None if row is None else _row_to_key(row),
                      "" if row is None else str(row.key_hash))
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = cached
        _, key, stored = cached
        if key is None or not hmac.compare_digest(stored, digest) or key.revoked_at is not None:
            return None
        return key
