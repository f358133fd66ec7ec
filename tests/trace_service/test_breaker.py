"""The circuit breaker, driven with explicit times."""

from __future__ import annotations

from trace_service.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


def make() -> CircuitBreaker:
    return CircuitBreaker(threshold=3, base_delay=1.0, max_delay=4.0, jitter=lambda: 1.0)


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = make()
    assert not breaker.record_failure(0.0)
    assert not breaker.record_failure(0.0)
    assert breaker.record_failure(0.0)
    assert breaker.state == OPEN and breaker.retry_at == 1.0


def test_success_resets_the_count() -> None:
    breaker = make()
    breaker.record_failure(0.0)
    breaker.record_failure(0.0)
    breaker.record_success()
    assert not breaker.record_failure(0.0)
    assert breaker.state == CLOSED


def test_half_open_only_after_the_delay_and_backoff_doubles_up_to_max() -> None:
    breaker = make()
    for _ in range(3):
        breaker.record_failure(0.0)
    assert not breaker.try_half_open(0.5)
    delays = []
    now = 0.0
    for _ in range(4):
        now = breaker.retry_at
        assert breaker.try_half_open(now) and breaker.state == HALF_OPEN
        breaker.record_failure(now)  # the probe failed
        delays.append(breaker.retry_at - now)
    assert delays == [2.0, 4.0, 4.0, 4.0]
    assert breaker.try_half_open(breaker.retry_at)
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.opens == 0


def test_jitter_never_exceeds_the_delay() -> None:
    breaker = CircuitBreaker(threshold=1, base_delay=2.0, max_delay=2.0, jitter=lambda: 0.0)
    breaker.record_failure(10.0)
    assert breaker.retry_at == 11.0
