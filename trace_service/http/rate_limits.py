"""Rate limits of the ingest endpoint, on the ``limits`` library (flask-limiter's engine).

Two limits: per API key (``TRACE_INGEST_RATE``), and per client address for requests that fail
authentication (``TRACE_AUTH_FAILURE_RATE``), so key guessing is slowed. Fixed windows in
``memory://`` by default (per process) or in Redis (``TRACE_RATELIMIT_STORAGE=redis://...``)
to share them across workers and hosts.

flask-limiter's decorators cost about 40% of a request here (bench/ingest.py, profiled), for
two checks the ``limits`` API does in a few microseconds each; so the endpoint calls it directly.
For ``memory://`` the counters are :class:`~trace_service.http.rate_limit_storage.LazyMemoryStorage`,
not ``limits``' ``MemoryStorage`` and its timer thread every 10 ms (4-6% of a worker's CPU,
that module says why).
"""

from __future__ import annotations

import time

from limits import RateLimitItem, parse, strategies

from trace_service.http.rate_limit_storage import storage_for


class RateLimits:
    """The ingest endpoint's two limits."""

    def __init__(self, storage_uri: str, ingest_rate: str, auth_failure_rate: str) -> None:
        self._window = strategies.FixedWindowRateLimiter(storage_for(storage_uri))
        self._ingest: RateLimitItem = parse(ingest_rate)
        self._auth: RateLimitItem = parse(auth_failure_rate)

    def _wait(self, item: RateLimitItem, *identifiers: str) -> float:
        reset = self._window.get_window_stats(item, *identifiers).reset_time
        return max(1.0, reset - time.time())

    def take(self, key: str) -> float | None:
        """Count one request for ``key``; None if allowed, else seconds until the window resets."""
        if self._window.hit(self._ingest, "ingest", key):
            return None
        return self._wait(self._ingest, "ingest", key)

    def auth_blocked(self, address: str) -> float | None:
        """Seconds to wait if ``address`` failed authentication too often, else None."""
        if self._window.test(self._auth, "auth", address):
            return None
        return self._wait(self._auth, "auth", address)

    def auth_failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        self._window.hit(self._auth, "auth", address)
