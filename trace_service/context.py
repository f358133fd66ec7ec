"""Request-id correlation: the current request's id, ip, user agent and route in ``contextvars``.

``TraceWriter.record()`` fills the fields its caller did not pass from :func:`current`. Inside
Flask the :class:`~trace_service.flask_ext.RequestContext` extension sets them; jobs and scripts use
the :func:`trace_context` context manager. :class:`RequestIdFilter` adds ``request_id`` to log
records so log lines and traces can be joined.

The X-Request-ID rule is the PHP middleware's (ramsey/uuid, ``docs/php-compat.md`` §2 and §6):
a version-4, RFC-variant UUID is kept, normalised to 36 lower-case characters, whether it came in
upper case, in braces, with a ``urn:uuid:`` prefix or without hyphens; anything else (surrounding
spaces, another version, another variant, garbage) is replaced by a fresh v4.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from trace_service.random_ids import uuid4_text

_UUID_FORMS = re.compile(
    r"(?:urn:uuid:)?"
    r"(?P<open>\{)?"
    r"(?P<a>[0-9a-f]{8})(?P<h>-?)(?P<b>[0-9a-f]{4})(?P=h)(?P<c>[0-9a-f]{4})(?P=h)"
    r"(?P<d>[0-9a-f]{4})(?P=h)(?P<e>[0-9a-f]{12})"
    r"(?(open)\})",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What ``record()`` takes from the current request when its caller does not say."""

    request_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    route_name: str | None = None


EMPTY = RequestInfo()
_current: ContextVar[RequestInfo] = ContextVar("trace_request_info", default=EMPTY)


def new_request_id() -> str:
    """A fresh UUID v4 in the canonical lower-case 36-character form (``str(uuid.uuid4())``'s),
    from the process's buffer of ``os.urandom`` bytes (:mod:`trace_service.random_ids`): a
    syscall (which releases the GIL) per few hundred ids, not one per request."""
    return uuid4_text()


def accept_request_id(header: str | None) -> str | None:
    """The normalised id if ``header`` is a v4 UUID in a form PHP accepts, else ``None``."""
    if not header or len(header) > 64:
        return None
    match = _UUID_FORMS.fullmatch(header)
    if match is None:
        return None
    hexed = "".join(match.group(part) for part in "abcde").lower()
    if hexed[12] != "4" or hexed[16] not in "89ab":
        return None
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def request_id_from_header(header: str | None) -> str:
    """The id a request carries from now on: the accepted header value or a new v4."""
    return accept_request_id(header) or new_request_id()


def current() -> RequestInfo:
    """The request information of the current context (empty fields outside any request)."""
    return _current.get()


def bind(info: RequestInfo) -> object:
    """Make ``info`` current; returns a token for :func:`unbind`."""
    return _current.set(info)


def unbind(token: object) -> None:
    """Restore what was current before the matching :func:`bind`."""
    _current.reset(token)  # type: ignore[arg-type]


@contextmanager
def trace_context(
    request_id: str | None = None,
    *,
    route_name: str | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
) -> Iterator[RequestInfo]:
    """Run a block (a job, a script) under one request id, new unless a valid one is given."""
    info = RequestInfo(
        request_id=request_id_from_header(request_id),
        ip_address=ip_address,
        user_agent=user_agent,
        route_name=route_name,
    )
    token = _current.set(info)
    try:
        yield info
    finally:
        _current.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (``-`` outside a request) so formats can use ``%(request_id)s``."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops it."""
        record.request_id = _current.get().request_id or "-"
        return True
