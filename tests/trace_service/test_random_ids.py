"""Request ids (UUID v4) and event ids (UUID v7) from the per-process ``os.urandom`` buffer:
the same text as before, unique, never the same bytes in two threads or in a forked child and
its parent, time-ordered v7, and a syscall per few hundred ids."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from trace_service import random_ids
from trace_service.context import accept_request_id, new_request_id
from trace_service.random_ids import BUFFER_BYTES, random_hex, uuid4_text, uuid7_text
from trace_service.stream_entry import new_event_id

V4_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
V7_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
V4_FIXED = (0xF << 76) | (0b11 << 62)  # the version and variant bits; the other 122 are random
V7_FIXED = ((1 << 48) - 1) << 80 | V4_FIXED  # and the 48 bits of milliseconds
ALL = (1 << 128) - 1
SAMPLES = 100_000


def test_request_ids_are_canonical_v4_uuids_as_php_takes_them() -> None:
    ids = [new_request_id() for _ in range(SAMPLES)]
    assert len(set(ids)) == SAMPLES
    values = 0
    for text in ids[:20_000]:
        assert V4_TEXT.fullmatch(text), text
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text  # byte for byte str(uuid.uuid4())'s form
        assert accept_request_id(text) == text
        values |= parsed.int
    assert values | V4_FIXED == ALL  # every random bit is set in some id
    _assert_uniform(ids[:20_000], [*range(8), 9, 10, 11, 12, 15, 16, 17, 20, 21, 22, *range(24, 36)])


def test_event_ids_are_canonical_v7_uuids_with_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_event_id() for _ in range(SAMPLES)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == SAMPLES
    ones, zeros = 0, 0
    for text in ids[:20_000]:
        assert V7_TEXT.fullmatch(text), text
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == text
        assert before <= parsed.int >> 80 <= after
        ones |= parsed.int
        zeros |= ~parsed.int & ALL
    assert ones | V7_FIXED == ALL and zeros | V7_FIXED == ALL  # each random bit takes both values
    _assert_uniform(ids[:20_000], [15, 16, 17, 20, 21, 22, *range(24, 36)])


def _assert_uniform(ids: list[str], positions: list[int]) -> None:
    """The random hex digits at ``positions``, and the variant digit (8, 9, a, b), come up equally
    often (within 10%: some 8 standard deviations for 20,000 ids)."""
    digits = Counter(text[at] for text in ids for at in positions)
    expected = len(ids) * len(positions) / 16
    assert len(digits) == 16 and all(abs(n - expected) < expected / 10 for n in digits.values()), digits
    variants = Counter(text[19] for text in ids)
    assert set(variants) == set("89ab") and all(abs(n - len(ids) / 4) < len(ids) / 40
                                                for n in variants.values()), variants


@settings(max_examples=100, deadline=None)
@given(moments=st.lists(st.datetimes(datetime(1970, 1, 1), datetime(9999, 12, 31)), min_size=2,
                        max_size=20))
def test_event_ids_sort_by_their_millisecond(moments: list[datetime]) -> None:
    made = []
    with freeze_time(moments[0].replace(tzinfo=UTC)) as clock:
        for moment in moments:
            clock.move_to(moment.replace(tzinfo=UTC))
            made.append((time.time_ns() // 1_000_000, uuid7_text()))
    for (millis, text), moment in zip(made, moments, strict=True):
        assert uuid.UUID(text).int >> 80 == millis
        # freezegun's time_ns() goes through a float: a millisecond off at most
        since_epoch = moment.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        assert abs(millis - since_epoch // timedelta(milliseconds=1)) <= 1
    in_text_order = [millis for millis, _ in sorted(made, key=lambda pair: pair[1])]
    assert in_text_order == sorted(in_text_order)  # a later millisecond sorts after, as text


@given(count=st.integers(0, 3 * BUFFER_BYTES))
def test_random_hex_gives_as_many_lower_case_digits_as_asked(count: int) -> None:
    digits = random_hex(count)
    assert len(digits) == count and re.fullmatch("[0-9a-f]*", digits)


@pytest.fixture
def urandom_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    calls: list[int] = []
    real = os.urandom

    def counting(size: int) -> bytes:
        calls.append(size)
        return real(size)

    monkeypatch.setattr(random_ids, "urandom", counting)
    yield calls


def test_one_syscall_serves_hundreds_of_ids(urandom_calls: list[int]) -> None:
    for _ in range(10_000):
        new_request_id()
        new_event_id()
    ids_per_call = 2 * BUFFER_BYTES // max(31, 19)
    assert 0 < len(urandom_calls) <= 2 * 10_000 // ids_per_call + 1
    assert set(urandom_calls) == {BUFFER_BYTES}


@pytest.fixture
def counter_bytes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``os.urandom`` made of 8-byte counters that never repeat, and a fresh buffer: each 16 hex
    digits taken at a buffer's 16-digit boundaries are one counter, each handed out once."""
    counter = iter(range(1, 1 << 62))

    def counters(size: int) -> bytes:
        assert size % 8 == 0
        return b"".join(next(counter).to_bytes(8, "big") for _ in range(size // 8))

    monkeypatch.setattr(random_ids, "urandom", counters)
    random_ids._pool._reset()
    yield
    random_ids._pool._reset()  # no counter bytes left for the ids of later tests


@pytest.mark.usefixtures("counter_bytes")
def test_two_threads_never_get_the_same_bytes() -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    taken: list[list[str]] = []

    def take() -> None:
        mine = [random_hex(16) for _ in range(20_000)]
        taken.append(mine)

    threads = [threading.Thread(target=take) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    every = [digits for mine in taken for digits in mine]
    assert len(every) == 8 * 20_000
    assert sorted(int(digits, 16) for digits in every) == list(range(1, 8 * 20_000 + 1))


def test_ids_from_many_threads_are_unique() -> None:
    made: list[list[str]] = []

    def make(source: Callable[[], str]) -> None:
        made.append([source() for _ in range(10_000)])

    threads = [threading.Thread(target=make, args=(source,))
               for source in (new_request_id, new_event_id) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [text for ids in made for text in ids]
    assert len(set(every)) == len(every) == 80_000


def _in_child(work: Callable[[], str], timeout: float = 10) -> str:
    """What ``work()`` returns in a forked child (``os._exit``: no pytest teardown there)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, work().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            pytest.fail("the child hung")
        time.sleep(0.01)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read().decode()
    assert os.waitstatus_to_exitcode(done[1]) == 0
    return output


def test_a_forked_child_never_hands_out_its_parents_next_ids() -> None:
    random_ids._pool._reset()
    new_request_id()  # a full buffer, which holds the parent's next 200 ids
    assert random_ids._pool.position + 100 * (31 + 19) < len(random_ids._pool.digits)
    child = _in_child(lambda: " ".join(new_request_id() for _ in range(100))
                      + " " + " ".join(new_event_id() for _ in range(100))).split()
    parent = [new_request_id() for _ in range(100)] + [new_event_id() for _ in range(100)]
    assert len(child) == 200
    assert not set(child) & set(parent)
    # and not the same random digits either (event ids made in one millisecond share the rest)
    assert not {text[14:] for text in child} & {text[14:] for text in parent}


def test_a_forked_child_is_not_stuck_on_a_lock_another_thread_held() -> None:
    with random_ids._pool.lock:  # as if another thread of the parent were taking digits
        child = _in_child(uuid4_text)
    assert V4_TEXT.fullmatch(child)
