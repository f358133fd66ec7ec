"""A body that does not arrive within TRACE_INGEST_BODY_SECONDS is answered 408 on every POST.

gunicorn's gevent workers (the durable path's) install :class:`BodyDeadline`; here it wraps a
test app directly, and the client's body is a stream whose reads wait on gevent's hub (as a
gevent socket's do) far longer than the deadline. The end-to-end run under a real gevent
gunicorn, with clients trickling over sockets, is in tests/reliability/test_hostile_input.py.
"""

from __future__ import annotations

import gevent
import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.trace_service.http.test_ingest import make_ingest
from trace_service.http.body_deadline import BodyDeadline

SECONDS = 0.2


class Trickle:
    """A request body that sends its first byte, then stalls (cooperatively, as under gevent)."""

    def __init__(self) -> None:
        self.sent = False

    def read(self, size: int | None = None) -> bytes:
        if not self.sent:
            self.sent = True
            return b"{"
        gevent.sleep(30)
        return b""

    def readline(self, size: int | None = None) -> bytes:
        return self.read(size)


@pytest.mark.parametrize("path", ["/api/telemetry/traces", "/v1/logs", "/v1/traces"])
def test_a_body_that_does_not_arrive_in_time_is_answered_408_and_nothing_is_stored(
        sqlite_url: str, path: str) -> None:
    ingest = make_ingest(sqlite_url)
    ingest.app.wsgi_app = BodyDeadline(ingest.app.wsgi_app, SECONDS)  # type: ignore[method-assign]
    started = gevent.get_hub().loop.now()
    try:
        environ = EnvironBuilder(path=path, method="POST", headers=[
            ("Authorization", f"Bearer {ingest.key}"), ("Content-Type", "application/json")]).get_environ()
        # The test client's own input must be seekable: a server's socket body instead.
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = Trickle(), "100000"
        environ.pop("wsgi.input_terminated", None)
        body, status, _headers = run_wsgi_app(ingest.app, environ, buffered=True)
        waited = gevent.get_hub().loop.now() - started
        answer = b"".join(body)
        assert status.startswith("408 "), answer
        assert b"TRACE_INGEST_BODY_SECONDS" in answer  # what to change, named
        assert waited < 10  # the deadline ended the wait, not the stalled read's own end
        assert ingest.stored() == []
    finally:
        ingest.app.extensions["trace_writer"].close(2)


def test_a_body_that_arrives_in_time_is_untouched(sqlite_url: str) -> None:
    ingest = make_ingest(sqlite_url)
    ingest.app.wsgi_app = BodyDeadline(ingest.app.wsgi_app, SECONDS)  # type: ignore[method-assign]
    try:
        response = ingest.post({"event_key": "auth.login", "metadata": {"n": 1}})
        assert response.status_code == 202, response.data
        assert [row.event_key for row in ingest.stored()] == ["auth.login"]
    finally:
        ingest.app.extensions["trace_writer"].close(2)
