"""Exceptions of the trace service: the project's one tree, drawn in ``governance.errors``."""

from __future__ import annotations

from governance.errors import (
    ConfigError,
    LayoutError,
    PolicyError,
    TelemetryError,
    TraceInputError,
    TraceWriteError,
)

__all__ = [
    "ConfigError", "LayoutError", "PolicyError", "TelemetryError", "TraceInputError",
    "TraceWriteError",
]
