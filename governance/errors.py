"""The project's one exception tree, every class of it defined here.

::

    TelemetryError                      root of everything this project raises on purpose
    ├── ConfigError                     a setting is missing or malformed (names the setting)
    │   └── PolicyError                 a policy file is malformed (names the file and the key)
    ├── LayoutError                     telemetry_traces is missing or has an unknown layout
    ├── MaskingError                    masking failed on a record (the record is dropped, never
    │                                   stored unmasked)
    ├── TraceInputError (ValueError)    a record() argument is invalid (raised only in strict mode)
    │   └── MetadataError               metadata that cannot be stored (not a dict or list, too
    │                                   deep, cyclic)
    ├── TraceWriteError                 the writer lost rows to errors (raised only in strict mode)
    ├── SinkUnavailable                 the database cannot take writes now (the writer's circuit
    │                                   breaker counts it; never reaches a caller)
    ├── ClaimConflict                   a batch's event ids were claimed by another meanwhile (the
    │                                   sink claims again id by id; never reaches a caller)
    ├── AuditWriteForbidden             the guard refused a statement that writes audit_logs
    ├── UnparseableSQL                  SQL text the guard cannot analyse (refused if it names a
    │                                   protected table)
    ├── MaintenanceError                a retention or partition job could not run safely (locks,
    │                                   a table of the wrong shape, a stop request)
    ├── IngestError                     a request the HTTP endpoint refuses whole (with its status)
    └── FormError (ValueError)          a form body PHP's rules cannot read into fields

It lives in ``governance`` because that package is the bottom of the dependency graph: every
other package may import it. ``trace_service.errors`` hands the same classes on to the writer
library's users.
"""

from __future__ import annotations

from collections.abc import Iterable


class TelemetryError(Exception):
    """Root of every exception this project raises on purpose."""


class ConfigError(TelemetryError):
    """A setting is missing or malformed; the message names the setting, the value and the fix."""


class PolicyError(ConfigError):
    """A policy file is malformed; the message names the file, the key, the value and the fix."""


class LayoutError(TelemetryError):
    """The trace table is missing, or its columns match no known layout."""


class MaskingError(TelemetryError):
    """Masking failed on a record; the record is dropped (fail closed), never stored unmasked."""


class TraceInputError(TelemetryError, ValueError):
    """A ``record()`` argument is invalid. Raised only when the writer is strict."""


class TraceWriteError(TelemetryError):
    """Rows were dropped for an error reason. Raised only when the writer is strict."""


class MaintenanceError(TelemetryError):
    """A retention or partition job could not run safely; the message says why and what to do."""

class MetadataError(TraceInputError):
    """Metadata that cannot be stored: not a dict or list, nested deeper than PHP's limit, cyclic."""


class SinkUnavailable(TelemetryError):
    """The database cannot take writes now (unreachable, table missing): a breaker failure."""


class ClaimConflict(TelemetryError):
    """Another claimer took some of a batch's event ids between the batch claim's read and its
    insert (``trace_service.idempotency.claim``). ``TraceSink`` catches it, rolls the transaction
    back and claims the batch again id by id: it never reaches a user of the writer."""


class AuditWriteForbidden(TelemetryError):
    """A statement would write a protected table; it was not sent to the database."""

    def __init__(self, tables: Iterable[str], digest: str) -> None:
        self.tables = tuple(sorted(tables))
        self.digest = digest
        super().__init__(
            f"refused a write to {', '.join(self.tables)}: that table belongs to the "
            f"authoritative audit writer (statement sha256 {digest[:16]})"
        )


class UnparseableSQL(TelemetryError):
    """SQL text that could not be analysed (the guard refuses it if it names a protected table)."""


class IngestError(TelemetryError):
    """A request the endpoint refuses as a whole, with its HTTP status (and, for 429 and 503,
    how many seconds the client should wait before retrying)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class FormError(TelemetryError, ValueError):
    """A form body PHP's rules cannot read into fields."""
