"""The exceptions a user of the writer library may meet: the project's one tree, drawn and
defined in ``governance.errors``, handed on here."""

from __future__ import annotations

from governance.errors import (
    ConfigError,
    LayoutError,
    MetadataError,
    PolicyError,
    SinkUnavailable,
    TelemetryError,
    TraceInputError,
    TraceWriteError,
)

__all__ = [
    "ConfigError", "LayoutError", "MetadataError", "PolicyError", "SinkUnavailable", "TelemetryError",
    "TraceInputError", "TraceWriteError",
]
