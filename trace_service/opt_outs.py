"""Opted-out subjects, as every writer and endpoint sees them: an in-memory set, refreshed.

People who opted out (``flask governance opt-out add``) are rows of ``trace_opt_outs``
(migration 0005): admin ids, and email hashes under every key of ``CRYPTO_KEYS``. A trace is
not stored when its actor is an opted-out admin, or when its masked metadata holds an opted-out
email hash anywhere: as ``email_hash`` (or ``<key>_hash``) the way PHP and our masker store it,
or inside text as ``[email_hash:<hex>]``. It is counted as ``opted_out`` (a discard, not a loss).

The check runs where the metadata is masked and encoded (the sink, in the writer thread, and the
endpoint), against :attr:`OptOutCache.current`: an attribute read once started, and never in
the thread of a ``record()`` caller. A daemon thread reloads the set every
``TRACE_OPT_OUT_REFRESH_SECONDS`` (default 30): **a new opt-out applies everywhere within that
time**, to every trace written from then on, including traces queued before it (they are checked
when written). When the database cannot answer, the last set stays in force; before the first
load (or without the table, on a schema not yet upgraded) the set is empty and a warning says so.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

from trace_service import db
from trace_service.log_throttle import ThrottledLogger

TABLE = "trace_opt_outs"
ACTOR, EMAIL_HASH = "actor_id", "email_hash"
# Keyed email hashes are 64 lower-case hex digits (governance.hashing), wherever they stand.
_HASHES = re.compile(r"[0-9a-f]{64}")

logger = logging.getLogger("trace_service.opt_outs")


@dataclass(frozen=True)
class OptOutSet:
    """The opted-out admin ids and email hashes at one instant (pure)."""

    actor_ids: frozenset[int] = frozenset()
    email_hashes: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.actor_ids or self.email_hashes)

    def excludes(self, actor_id: int | None, metadata_text: str | None) -> bool:
        """Whether a trace of ``actor_id`` with this masked, encoded metadata is not to be
        stored."""
        if actor_id is not None and actor_id in self.actor_ids:
            return True
        if not self.email_hashes or not metadata_text:
            return False
        hashes = self.email_hashes
        return any(found in hashes for found in _HASHES.findall(metadata_text))

    def __repr__(self) -> str:  # counts only: the hashes identify people
        return f"OptOutSet(actors={len(self.actor_ids)}, email_hashes={len(self.email_hashes)})"


def load_opt_outs(engine: Engine) -> OptOutSet:
    """Read the whole table (it holds people, not traces: small)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT kind, value FROM {TABLE}")).all()
    actors = frozenset(int(value) for kind, value in rows if kind == ACTOR)
    hashes = frozenset(str(value) for kind, value in rows if kind == EMAIL_HASH)
    return OptOutSet(actors, hashes)


class OptOutCache:
    """:attr:`current` is the latest set loaded from ``engine``'s database; a daemon thread
    reloads it every ``refresh`` seconds.

    Started lazily, on the first read in each process: the first read loads the set in the
    reading thread (the sink's writer thread, or a request of the endpoint: both about to use the
    database anyway; never a ``record()`` caller), then the thread takes over. A process forked
    after that (gunicorn ``--preload``) starts its own on its first read, so no thread or
    connection is shared across a fork, and a master that never writes never polls. Reloads use
    a connection of their own (no pool), never one the writer thread is waiting for.
    """

    def __init__(self, engine: Engine, refresh: float, log_interval: float = 60.0) -> None:
        self.engine = engine
        self.refresh = refresh
        self.loaded = False
        self._current = OptOutSet()
        self._log = ThrottledLogger(logger, log_interval)
        self._lock = threading.Lock()
        self._pid = 0  # the process whose thread is running (0: none started)
        self._stopped = False
        self._stop = threading.Event()
        self._own: Engine | None = None

    @property
    def current(self) -> OptOutSet:
        """The opted-out subjects now (starts the cache in this process on first use)."""
        if self._pid != os.getpid() and not self._stopped:
            self._start()
        return self._current

    def _start(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._pid == pid or self._stopped:
                return
            # After a fork: the parent's event and engine are not ours to share.
            self._stop = threading.Event()
            self._own = None
            self.reload()
            thread = threading.Thread(target=self._loop, args=(self._stop,), name="trace-opt-outs",
                                      daemon=True)
            thread.start()
            self._pid = pid

    def stop(self) -> None:
        """Stop reloading for good (the set stays as it was)."""
        self._stopped = True
        self._stop.set()

    def reload(self) -> bool:
        """Load the set now; on failure keep the last one. True when loaded."""
        try:
            if self._own is None:
                self._own = _unpooled(self.engine)
            self._current = load_opt_outs(self._own)
        except Exception as exc:  # the thread must outlive anything a reload meets
            # A database not yet upgraded (a `flask db upgrade` about to run, say) is said
            # quietly; any other failure is a warning.
            missing = isinstance(exc, sa_exc.SQLAlchemyError) and (
                db.error_code(exc) == db.ER_NO_SUCH_TABLE or "no such table" in str(exc))
            state = "the last loaded set stays in force" if self.loaded else \
                "no opt-out is applied until they can be read"
            self._log.log(logging.INFO if missing else logging.WARNING, "opt-out-load",
                          "opt-outs could not be read (%s); %s", "no trace_opt_outs table: run "
                          "`flask db upgrade`" if missing else type(exc).__name__, state)
            return False
        self.loaded = True
        return True

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.refresh):
            self.reload()


def _unpooled(engine: Engine) -> Engine:
    """An engine on ``engine``'s database that opens a connection per reload and closes it."""
    return db.create_engine(engine.url.render_as_string(hide_password=False), poolclass=NullPool)
