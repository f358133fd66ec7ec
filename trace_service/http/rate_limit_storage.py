"""The ingest endpoint's in-process rate-limit counters (``TRACE_RATELIMIT_STORAGE=memory://``).

``limits``' own ``MemoryStorage`` expires its counters with a ``threading.Timer``: every
``incr`` starts a new timer thread if the previous one (10 ms) has finished, and each timer
sweeps every key. Under load that is a thread start every ~10 ms in each gunicorn worker
(thread creation, a sweep of all keys, GIL hand-offs with the request thread): 4-6% of a
worker's CPU in the ingest endpoint's profile. :class:`LazyMemoryStorage` keeps the same
fixed windows with no thread at all: a counter past its expiry reads as absent, and expired
counters are swept, amortised, by the ``incr`` that finds the table grown past a size or the
sweep interval passed, so memory stays bounded (an attacker cycling client addresses for auth
failures cannot grow it without end).

It is a :class:`limits.storage.Storage` for ``limits``' ``FixedWindowRateLimiter``, which
stays the engine (parse, RateLimitItem, the strategies, the Redis storage). It registers no
scheme: ``limits`` registers a storage class under the names in its own ``STORAGE_SCHEME``
when the class is defined, so claiming ``memory`` would hand every ``storage_from_string
("memory://")`` in the process (an app's flask-limiter, say) to this class.
:func:`storage_for` picks it for ``memory://`` and asks ``limits`` for any other URI.

The fixed-window semantics are ``limits``' ``MemoryStorage``'s, and the same time source
(``time.time()``): a window starts at the key's first hit (the ``incr`` that brings a count
from nothing or zero to the amount) and lasts the item's expiry; at or past its end the count
is 0 again and ``get_expiry`` gives the current time (what ``MemoryStorage`` gives once its
timer swept the key). tests/trace_service/http/test_rate_limit_storage.py compares the two
over random sequences of hits and clock moves.
"""

from __future__ import annotations

import threading
import time
import urllib.parse

from limits.storage import Storage, storage_from_string

# Counters the table holds before an incr sweeps the expired ones; after a sweep the next one
# comes when the table is twice the counters still live (amortised O(1) an incr).
MIN_SWEEP_SIZE = 1024
# An incr sweeps at least this often (seconds), so a burst's dead counters do not stay for good.
SWEEP_INTERVAL = 60.0


class LazyMemoryStorage(Storage):
    """Fixed-window counters in a dict of ``key -> (count, expires_at)``, expired lazily.

    Thread-safe: ``incr`` and the sweep run under one lock; ``get`` and ``get_expiry`` read
    one immutable tuple from the dict without it (a dict lookup is atomic, and a sweep only
    swaps in a new dict of the live entries, which read the same)."""

    # No STORAGE_SCHEME: see the module docstring.

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, *,
                 min_sweep_size: int = MIN_SWEEP_SIZE, sweep_interval: float = SWEEP_INTERVAL,
                 **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._items: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._min_sweep_size = min_sweep_size
        self._sweep_interval = sweep_interval
        self._sweep_at = min_sweep_size
        self._next_sweep = time.time() + sweep_interval

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:  # pragma: no cover
        return ValueError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s count in its window (a new window of ``expiry`` seconds
        if it had none or it ended); returns the count."""
        now = time.time()
        with self._lock:
            items = self._items
            entry = items.get(key)
            if entry is None or entry[1] <= now:
                if entry is None and (len(items) >= self._sweep_at or now >= self._next_sweep):
                    items = self._sweep(now)
                count, expires = amount, now + expiry
            else:
                count = entry[0] + amount
                # MemoryStorage: a count that was 0 (hits of cost 0) starts its window anew.
                expires = now + expiry if count == amount else entry[1]
            items[key] = (count, expires)
        return count

    def _sweep(self, now: float) -> dict[str, tuple[int, float]]:
        """Drop the expired counters (a new dict: a dict never shrinks its table by deletes)."""
        live = {key: entry for key, entry in self._items.items() if entry[1] > now}
        self._items = live
        self._sweep_at = max(self._min_sweep_size, 2 * len(live))
        self._next_sweep = now + self._sweep_interval
        return live

    def get(self, key: str) -> int:
        """``key``'s count in its current window (0 without one)."""
        entry = self._items.get(key)
        if entry is None or entry[1] <= time.time():
            return 0
        return entry[0]

    def get_expiry(self, key: str) -> float:
        """When ``key``'s window ends (now without one)."""
        now = time.time()
        entry = self._items.get(key)
        if entry is None or entry[1] <= now:
            return now
        return entry[1]

    def check(self) -> bool:
        """Always healthy: it is a dict."""
        return True

    def reset(self) -> int | None:
        """Forget every counter; returns how many there were."""
        with self._lock:
            count = len(self._items)
            self._items = {}
            self._sweep_at = self._min_sweep_size
        return count

    def clear(self, key: str) -> None:
        """Forget ``key``'s counter."""
        with self._lock:
            self._items.pop(key, None)

    @property
    def size(self) -> int:
        """Counters held, live or expired but not yet swept (not ``__len__``: an empty storage
        must not be falsy)."""
        return len(self._items)


def storage_for(uri: str) -> Storage:
    """The storage of ``TRACE_RATELIMIT_STORAGE``: :class:`LazyMemoryStorage` for ``memory://``,
    else what ``limits`` registers for the URI's scheme (``redis://``, ...)."""
    if urllib.parse.urlparse(uri).scheme == "memory":
        return LazyMemoryStorage(uri)
    made = storage_from_string(uri)
    if not isinstance(made, Storage):  # an async+ scheme
        raise ValueError(f"not a synchronous rate-limit storage: {uri}")
    return made
