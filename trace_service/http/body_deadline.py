"""A deadline on a request's body, for gevent workers (the durable path's, gunicorn.conf.py).

A sync worker stuck on a client that trickles its body is killed at gunicorn's ``timeout``, and
its request with it. A gevent worker has no such limit: gunicorn bounds the wait for a request's
headers (its ``keepalive``), but a greenlet reading the body waits as long as the client keeps
the connection open, and enough slow clients hold every one of a worker's
``worker_connections``. :class:`BodyDeadline` gives each request's body ``seconds`` to arrive
in full: a read still waiting then raises :class:`~werkzeug.exceptions.RequestTimeout`, which
the app answers as a JSON 408 (nothing of the request stored). gunicorn then closes the
connection within its ``keepalive`` (it discards the rest of the body under that timeout, and
does not let an app ask for the close).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from werkzeug.exceptions import RequestTimeout

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_Read = TypeVar("_Read")


class BodyDeadline:
    """WSGI middleware: each request's ``wsgi.input`` must be read within ``seconds`` of the
    request's start (gevent only: its timer interrupts a greenlet's wait on the socket)."""

    def __init__(self, app: WSGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], time.monotonic() + self.seconds,
                                               self.seconds)
        return self.app(environ, start_response)


class _DeadlineInput:
    """A request body whose reads give up at a deadline."""

    def __init__(self, stream: Any, deadline: float, seconds: float) -> None:
        self._stream = stream
        self._deadline = deadline
        self._seconds = seconds

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
        import gevent  # only the gevent workers install this middleware

        remaining = self._deadline - time.monotonic()
        timer = gevent.Timeout(max(remaining, 0.0))
        timer.start()
        try:
            return read(size)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            raise RequestTimeout(f"the request body did not arrive within {self._seconds:g} s "
                                 "(TRACE_INGEST_BODY_SECONDS): send it at once, or raise the "
                                 "limit") from None
        finally:
            timer.close()
