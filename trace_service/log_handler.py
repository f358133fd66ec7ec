"""``TraceHandler``: the standard ``logging`` module as a way into ``telemetry_traces``.

An app that already logs gets traces by configuration alone::

    logging.config.dictConfig({
        "version": 1,
        "handlers": {"traces": {
            "class": "trace_service.log_handler.TraceHandler",
            "level": "INFO",
            "writer": "ext://myapp.telemetry.writer",  # omit: a writer from the TRACE_* env
            "event_keys": {"myapp.auth": "auth.event",
                           "myapp.auth:login failed for %s": "auth.login.failure"},
        }},
        "root": {"handlers": ["traces"], "level": "INFO"},
    })

A log record becomes one trace:

* **event key**: ``extra={"event_key": ...}``; else ``event_keys`` by ``"<logger>:<message
  template>"``, then by the logger's name or its nearest parent's; else ``log.<logger name>``;
* **severity**: the level (DEBUG debug, INFO info, WARNING warning, ERROR error, CRITICAL
  critical; levels in between take the one below);
* **metadata**: ``message`` (the formatted message), ``logger``, and every ``extra`` field
  (``request_id`` in ``extra`` goes to its column instead); ``exc_info`` as ``exception``:
  ``{"type": "module.Class", "message": str(exc)}``, never the stack frames, whose local values
  could hold anything. All of it is masked by the writer like any metadata;
* **request id, ip, user agent, route**: the request context (``trace_service.context``), as for
  ``record()``.

It never raises into the logging machinery: a failure goes to :meth:`logging.Handler.handleError`
(silent unless ``logging.raiseExceptions``), except with a ``strict`` writer, whose errors are
raised as ``record()`` raises them. It never blocks (``record()`` only queues), and it cannot
feed on itself: records of the project's own loggers, records logged while this handler is
already emitting in the same thread, and anything logged by the writer's thread are skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from trace_service.writer import TraceWriter

# Loggers of the writer and its helpers: a trace of "trace dropped" would be dropped again.
OWN_LOGGERS = ("trace_service", "governance")
# What every LogRecord carries: not the caller's ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "event_key", "request_id"}
_LEVELS = ((logging.CRITICAL, "critical"), (logging.ERROR, "error"), (logging.WARNING, "warning"),
           (logging.INFO, "info"))
_WRITER_THREAD = "trace-writer"
_emitting = threading.local()
_shared: TraceWriter | None = None
_shared_error: Exception | None = None
_shared_lock = threading.Lock()


def severity_of(levelno: int) -> str:
    """The trace severity of a logging level (a level between two takes the lower one)."""
    return next((name for level, name in _LEVELS if levelno >= level), "debug")


def _shared_writer() -> TraceWriter:
    """One writer per process for handlers configured without one (from the TRACE_* env). A
    configuration that cannot make one (a bad setting or policy file) is tried once: every later
    record meets the same error at once, not the cost of another attempt."""
    global _shared, _shared_error
    with _shared_lock:
        if _shared_error is not None:
            raise _shared_error
        if _shared is None:
            from trace_service.config import WriterConfig

            try:
                _shared = TraceWriter.from_config(WriterConfig.from_env())
            except Exception as exc:
                _shared_error = exc
                raise
        return _shared


class TraceHandler(logging.Handler):
    """A ``logging`` handler that records each log record as a trace (see the module)."""

    def __init__(self, writer: TraceWriter | None = None, level: int | str = logging.NOTSET, *,
                 event_keys: Mapping[str, str] | None = None) -> None:
        """``writer``: where the traces go (None: one writer per process from the TRACE_*
        environment, made at the first record). ``event_keys``: event key by
        ``"<logger>:<message template>"`` or by logger name (a parent's name covers its
        children)."""
        super().__init__(level)
        self._writer = writer
        self.event_keys = dict(event_keys or {})

    @property
    def writer(self) -> TraceWriter:
        """The writer records go to."""
        if self._writer is None:
            self._writer = _shared_writer()
        return self._writer

    def event_key(self, record: logging.LogRecord) -> str:
        """The event key of ``record`` (see the module)."""
        given = record.__dict__.get("event_key")
        if isinstance(given, str) and given:
            return given
        keys = self.event_keys
        if keys:
            by_template = keys.get(f"{record.name}:{record.msg}")
            if by_template is not None:
                return by_template
            name = record.name
            while name:
                if name in keys:
                    return keys[name]
                name = name.rpartition(".")[0]
        return f"log.{record.name}"

    def metadata(self, record: logging.LogRecord) -> dict[str, Any]:
        """The trace's metadata: the message, the logger, the extras, the exception."""
        metadata: dict[str, Any] = {"message": record.getMessage(), "logger": record.name}
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                # As given: record() copies it into PHP's JSON types (php_json.snapshot: keys
                # cast as PHP does, sets sorted, other objects their str()).
                metadata[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            kind = type(exc)
            metadata["exception"] = {"type": f"{kind.__module__}.{kind.__qualname__}",
                                     "message": str(exc)}
        return metadata

    def emit(self, record: logging.LogRecord) -> None:
        """Record ``record`` as a trace; never raises unless the writer is strict."""
        if (getattr(_emitting, "active", False) or record.name.startswith(OWN_LOGGERS)
                or threading.current_thread().name == _WRITER_THREAD):
            return
        _emitting.active = True
        writer = None
        try:
            writer = self.writer
            request_id = record.__dict__.get("request_id")
            writer.record(self.event_key(record), severity=severity_of(record.levelno),
                          metadata=self.metadata(record),
                          request_id=request_id if isinstance(request_id, str) else None)
        except Exception:
            if writer is not None and writer.strict:
                raise
            self.handleError(record)
        finally:
            _emitting.active = False
