"""Trace service: the best-effort writer library that backend apps import, and (in
:mod:`trace_service.http`) the HTTP service built on it.

Importing the package runs nothing; the names below are imported on first use, so an app that
only records traces never loads Flask's service side. ``create_app`` is here so that
``flask --app trace_service`` finds the service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trace_service.config import WriterConfig
    from trace_service.http.app import create_app as create_app
    from trace_service.writer import TraceWriter

# create_app is found here by `flask --app trace_service` (and imported only then); it is not
# part of the library's names, so `from trace_service import *` never loads the HTTP service.
__all__ = ["TraceWriter", "WriterConfig"]

_LAZY = {
    "create_app": "trace_service.http.app",
    "WriterConfig": "trace_service.config",
    "TraceWriter": "trace_service.writer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trace_service' has no attribute {name!r}")
