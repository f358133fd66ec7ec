"""The audit_logs guard: engines that refuse, before the database sees it, any write to a
protected table (governance rule 1, ``docs/php-compat.md`` §7; the write forms in §4).

``install(engine)`` hooks SQLAlchemy's ``before_cursor_execute``: every statement is checked by
:func:`governance.sql_targets.protected_writes` (a substring fast path, then the parser) and a
write is refused with :class:`AuditWriteForbidden`. Reads pass. A statement that names a protected
table and cannot be parsed, or whose effects cannot be seen (``CALL``, views, dynamic SQL), is
refused: the guard fails closed. Every engine the project creates has the guard
(``trace_service.db.create_engine``); host applications install it on theirs the same way.

Every block is counted (:func:`blocked_total`, per table) and logged on ``governance.audit_guard``
with the statement's kind and SHA-256, never its text (it may carry row values). Callers that
swallow errors (the trace writer) count blocks as their own drop reason as well, so a swallow-all
can never hide one.

Stored procedures are beyond any parser: the database grants are the defence there
(``governance.grants``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from governance.errors import AuditWriteForbidden
from governance.sql_targets import protected_writes

DEFAULT_PROTECTED = ("audit_logs",)
logger = logging.getLogger("governance.audit_guard")

_lock = threading.Lock()
_blocked: Counter[str] = Counter()
_guards: weakref.WeakKeyDictionary[Engine, AuditGuard] = weakref.WeakKeyDictionary()


class AuditGuard:
    """The check one engine runs on every statement."""

    def __init__(self, protected: Iterable[str] = DEFAULT_PROTECTED) -> None:
        self.protected = frozenset(name.lower() for name in protected)

    def check(self, statement: str) -> None:
        """Raise :class:`AuditWriteForbidden` if ``statement`` writes a protected table."""
        hit = protected_writes(statement, self.protected)
        if hit:
            digest = hashlib.sha256(statement.encode("utf-8", "replace")).hexdigest()
            with _lock:
                _blocked.update(hit)
            kind = statement.lstrip()[:12].split(None, 1)[0].upper() if statement.strip() else "?"
            logger.error("refused a statement (%s) that writes %s (sha256 %s)", kind,
                         ", ".join(sorted(hit)), digest[:16])
            raise AuditWriteForbidden(hit, digest)

    def before_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
        executemany: bool,
    ) -> None:
        """SQLAlchemy's hook: refuse the statement before the driver sends it."""
        self.check(statement)


def install(engine: Engine, protected: Iterable[str] = DEFAULT_PROTECTED) -> AuditGuard:
    """Attach a guard to ``engine`` (once; a second call returns the first guard)."""
    existing = engine_guard(engine)
    if existing is not None:
        return existing
    guard = AuditGuard(protected)
    event.listen(engine, "before_cursor_execute", guard.before_cursor_execute)
    with _lock:
        _guards[engine] = guard
    return guard


def engine_guard(engine: Engine) -> AuditGuard | None:
    """The guard installed on ``engine``, if any."""
    with _lock:
        return _guards.get(engine)


def blocked_total() -> dict[str, int]:
    """Blocked write attempts in this process, per protected table."""
    with _lock:
        return dict(_blocked)
