"""The in-process rate-limit storage (``memory://``): the fixed windows of ``limits``' own
``MemoryStorage``, hit for hit and second for second, without its timer thread, in bounded
memory, safe under threads; and ``limits``' ``memory`` scheme left to ``limits``."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from limits import RateLimitItem, parse
from limits._storage_scheme import SCHEMES
from limits.storage import MemoryStorage, RedisStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from tests.support.redis_server import RedisServer
from trace_service.http.rate_limit_storage import LazyMemoryStorage, storage_for
from trace_service.http.rate_limits import RateLimits

T0 = datetime(2026, 11, 16, 12, tzinfo=UTC)
ITEMS = [parse("3/minute"), parse("2/second"), parse("5/30 seconds")]


@pytest.fixture
def frozen() -> Iterator[FrozenDateTimeFactory]:
    with freeze_time(T0) as clock:
        assert isinstance(clock, FrozenDateTimeFactory)
        yield clock


def _reference() -> MemoryStorage:
    """``limits``' MemoryStorage with its timer stopped: the timer only deletes keys that its
    ``get`` (which ``hit``, ``test`` and ``get_window_stats`` call first) treats as expired
    anyway, and left running it would race the test from a thread of its own."""
    storage = MemoryStorage()
    storage.timer.cancel()
    setattr(storage, "_MemoryStorage__schedule_expiry", lambda: None)  # noqa: B010 (name-mangled)
    return storage


STEPS = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.0, 0.001, 0.25, 0.5, 1.0, 1.5, 29.999, 30.0, 59.0, 60.0, 61.0])
        | st.floats(0, 90, allow_nan=False).map(lambda s: round(s, 6)),
        st.sampled_from(["hit", "hit", "hit", "test", "stats"]),
        st.integers(0, len(ITEMS) - 1),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([1, 1, 1, 2, 0]),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
def test_windows_count_and_reset_as_limits_memory_storage_does(
        steps: list[tuple[float, str, int, str, int]]) -> None:
    with freeze_time(T0) as clock:
        ours = FixedWindowRateLimiter(LazyMemoryStorage(min_sweep_size=4, sweep_interval=45))
        theirs = FixedWindowRateLimiter(_reference())
        for advance, operation, index, key, cost in steps:
            clock.tick(advance)
            item = ITEMS[index]
            if operation == "hit":
                assert ours.hit(item, "k", key, cost=cost) == theirs.hit(item, "k", key, cost=cost)
            elif operation == "test":
                assert ours.test(item, "k", key, cost=cost) == theirs.test(item, "k", key, cost=cost)
            else:
                assert ours.get_window_stats(item, "k", key) == theirs.get_window_stats(item, "k", key)
        for item in ITEMS:
            for key in "abc":
                assert ours.get_window_stats(item, "k", key) == theirs.get_window_stats(item, "k", key)


def test_the_window_starts_at_the_first_hit_and_the_wait_is_to_its_end(
        frozen: FrozenDateTimeFactory) -> None:
    limits = RateLimits("memory://", "2/minute", "1/minute")
    assert limits.take("key") is None
    frozen.tick(10)
    assert limits.take("key") is None
    frozen.tick(5)
    assert limits.take("key") == 45.0  # the window began at the first hit, 15 s ago
    frozen.tick(44.5)
    assert limits.take("key") == 1.0  # never less than a second
    frozen.tick(0.5)
    assert limits.take("key") is None  # a new window
    assert limits.auth_blocked("10.0.0.1") is None
    limits.auth_failed("10.0.0.1")
    assert limits.auth_blocked("10.0.0.1") == 60.0
    assert limits.auth_blocked("10.0.0.2") is None


def test_memory_stays_bounded_under_100000_addresses_whose_windows_expire(
        frozen: FrozenDateTimeFactory) -> None:
    """An attacker cycling addresses for auth failures: 100 new ones a second, a minute window."""
    limits = RateLimits("memory://", "10/minute", "5/minute")
    storage = limits._window.storage
    assert isinstance(storage, LazyMemoryStorage)
    live, largest = 60 * 100, 0
    for n in range(100_000):
        if n % 100 == 0:
            frozen.tick(1)
        limits.auth_failed(f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
        largest = max(largest, storage.size)
    assert largest <= 2 * (live + 100) + 1024
    frozen.tick(61)
    limits.auth_failed("192.0.2.1")
    assert storage.size == 1  # a minute on, the next new key sweeps the rest


def test_the_size_alone_bounds_memory_between_timed_sweeps(frozen: FrozenDateTimeFactory) -> None:
    window = FixedWindowRateLimiter(LazyMemoryStorage(min_sweep_size=100, sweep_interval=10**9))
    storage = window.storage
    assert isinstance(storage, LazyMemoryStorage)
    item = parse("1/second")
    largest = 0
    for n in range(100_000):
        if n % 50 == 0:
            frozen.tick(1)
        window.hit(item, "auth", str(n))
        largest = max(largest, storage.size)
    assert largest <= 100 + 50  # never more than the threshold and the keys since the last sweep


def test_no_thread_is_started(frozen: FrozenDateTimeFactory) -> None:
    before = threading.active_count()
    limits = RateLimits("memory://", "100/second", "3/minute")
    for n in range(20_000):
        if n % 1000 == 0:
            frozen.tick(0.5)
        limits.take(f"key-{n % 7}")
        limits.auth_failed(f"192.0.2.{n % 250}")
        limits.auth_blocked(f"192.0.2.{n % 250}")
    assert threading.active_count() == before


@pytest.fixture
def busy_switching() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("busy_switching")
def test_threads_count_every_hit_once() -> None:
    window = FixedWindowRateLimiter(LazyMemoryStorage(min_sweep_size=8))
    shared, own = parse("10000/hour"), parse("1000/hour")
    allowed: list[int] = []

    def hammer(number: int) -> None:
        mine = 0
        for n in range(2000):
            mine += window.hit(shared, "shared")
            window.hit(own, "own", str(number), str(n % 50))  # new keys: sweeps while others hit
        allowed.append(mine)

    threads = [threading.Thread(target=hammer, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 10_000
    assert window.storage.get(shared.key_for("shared")) == 16_000
    for number in range(8):
        for key in range(50):
            assert window.storage.get(own.key_for("own", str(number), str(key))) == 40


def test_clear_and_reset(frozen: FrozenDateTimeFactory) -> None:
    storage = LazyMemoryStorage()
    window = FixedWindowRateLimiter(storage)
    item: RateLimitItem = parse("1/minute")
    assert window.hit(item, "a") and window.hit(item, "b")
    window.clear(item, "a")
    assert window.hit(item, "a") and not window.hit(item, "b")
    assert storage.reset() == 2
    assert storage.size == 0 and window.hit(item, "b") and storage.check()


def test_the_memory_scheme_stays_limits_own() -> None:
    """Other users of ``limits`` in the process (an app's flask-limiter) still get MemoryStorage."""
    assert SCHEMES["memory"] is MemoryStorage
    other = storage_from_string("memory://")
    assert type(other) is MemoryStorage
    other.timer.cancel()
    assert type(storage_for("memory://")) is LazyMemoryStorage
    assert isinstance(RateLimits("memory://", "1/second", "1/second")._window.storage, LazyMemoryStorage)
    with pytest.raises(ValueError, match="not a synchronous"):
        storage_for("async+memory://")


def test_redis_uris_still_go_to_limits_redis_storage(redis_server: RedisServer) -> None:
    limits = RateLimits(redis_server.url, "2/minute", "1/minute")
    assert type(limits._window.storage) is RedisStorage
    assert [limits.take("key") for _ in range(3)][:2] == [None, None]
    assert limits.take("key") is not None
    other = RateLimits(redis_server.url, "2/minute", "1/minute")  # another worker, another host
    assert other.take("key") is not None
