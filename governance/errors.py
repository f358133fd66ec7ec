"""The project's one exception tree.

::

    TelemetryError                      root of everything this project raises on purpose
    ├── ConfigError                     a setting is missing or malformed (names the setting)
    │   └── PolicyError                 a policy file is malformed (names the file and the key)
    ├── LayoutError                     telemetry_traces is missing or has an unknown layout
    ├── MaskingError                    masking failed on a record (the record is dropped, never
    │                                   stored unmasked)
    ├── TraceInputError                 a record() argument is invalid (raised only in strict mode)
    ├── TraceWriteError                 the writer lost rows to errors (raised only in strict mode)
    ├── MaintenanceError                a retention or partition job could not run safely (locks,
    │                                   a table of the wrong shape, a stop request)
    └── SinkUnavailable                 (trace_service.sink, internal) the database cannot take writes

It lives in ``governance`` because that package is the bottom of the dependency graph;
``trace_service.errors`` re-exports it.
"""

from __future__ import annotations


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
