"""A deadline on a request's body, for gevent workers (the durable path's, gunicorn.conf.py).

A sync worker stuck on a client that trickles its body is killed at gunicorn's ``timeout``, and
its request with it. A gevent worker has no such limit: gunicorn bounds the wait for a request's
headers (its ``keepalive``), but a greenlet reading the body waits as long as the client keeps
the connection open, and enough slow clients hold every one of a worker's
``worker_connections``. :class:`BodyDeadline` gives each request's body ``seconds`` to arrive
in full, counted from when the request reaches the app (after its headers): a read still
waiting then raises :class:`~werkzeug.exceptions.RequestTimeout`, which the app answers as a
JSON 408 (nothing of the request stored).

The connection is never read again after that: the rest of a late body must not be parsed as
the next request (with a chunked body, gunicorn would otherwise take whatever followed for a new
request: a desync a reused proxy connection could exploit). The timer raises an ``Exception`` of
ours, which gunicorn's body reader records as a failed body (it closes the connection; a
``gevent.Timeout`` is a ``BaseException`` it lets through unrecorded), and the socket's read side
is shut down as well, for gunicorn versions that do not record it.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from werkzeug.exceptions import RequestTimeout

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_Read = TypeVar("_Read")


def threads_are_greenlets() -> bool:
    """Whether gevent has patched ``threading`` in this process (gunicorn's gevent workers)."""
    monkey = sys.modules.get("gevent.monkey")  # never imported here: only who runs gevent has it
    return monkey is not None and bool(monkey.is_module_patched("threading"))


class _BodyLate(Exception):
    """Raised into the greenlet by the deadline's timer."""


class BodyDeadline:
    """WSGI middleware: each request's ``wsgi.input`` must be read within ``seconds``. Its timer
    is gevent's, so it serves gevent workers only: ``create_app`` installs it when the app is
    built under gevent (gunicorn.conf.py's gevent workers build it after gevent's patching; a
    ``--preload`` master would not)."""

    def __init__(self, app: WSGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], time.monotonic() + self.seconds,
                                               self.seconds, environ.get("gunicorn.socket"))
        return self.app(environ, start_response)


class _DeadlineInput:
    """A request body whose reads give up at a deadline."""

    def __init__(self, stream: Any, deadline: float, seconds: float, sock: Any) -> None:
        self._stream = stream
        self._deadline = deadline
        self._seconds = seconds
        self._socket = sock

    def read(self, size: int | None = None) -> bytes:
        data: bytes = self._within(self._stream.read, size)
        return data

    def readline(self, size: int | None = None) -> bytes:
        line: bytes = self._within(self._stream.readline, size)
        return line

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return self._within(self._stream.readlines, hint)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def _within(self, read: Callable[[int | None], _Read], size: int | None) -> _Read:
        import gevent  # only gevent workers get here

        late = _BodyLate()
        timer = gevent.Timeout(max(self._deadline - time.monotonic(), 0.0), late)
        timer.start()
        try:
            return read(size)
        except _BodyLate as exc:
            if exc is not late:
                raise
            self._stop_reading()
            raise RequestTimeout(f"the request body did not arrive within {self._seconds:g} s "
                                 "(TRACE_INGEST_BODY_SECONDS): send it at once, or raise the "
                                 "limit") from None
        finally:
            timer.close()

    def _stop_reading(self) -> None:
        """Nothing more is read from this connection: the server sees its end and closes it
        once the 408 is written."""
        if self._socket is not None:
            with contextlib.suppress(OSError):  # already gone
                self._socket.shutdown(socket.SHUT_RD)
