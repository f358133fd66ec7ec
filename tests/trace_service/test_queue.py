"""The queue and its accounting on their own, no database: every submission ends written, a
duplicate, or dropped for one reason, and the books balance at every step."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from trace_service.queue import DropReason, TraceItem, TraceQueue, WriteResult


def item(key: str = "x.y") -> TraceItem:
    return TraceItem(key, "info", None, None, None, None, None, b"{}", 0)


def balanced(queue: TraceQueue) -> bool:
    tally = queue.tally()
    return tally.submitted == (tally.written + sum(tally.dropped_by_reason.values())
                               + tally.duplicates + tally.pending) and tally.pending >= 0


def test_a_full_queue_refuses_and_the_caller_counts_the_drop() -> None:
    queue = TraceQueue(2)
    assert queue.put(item()) and queue.put(item())
    assert not queue.put(item())
    queue.count_direct(DropReason.QUEUE_FULL, "queue full")
    tally = queue.tally()
    assert (tally.submitted, tally.queue_depth, tally.dropped_by_reason["queue_full"]) == (3, 2, 1)
    assert tally.pending == 2 and balanced(queue)


def test_the_tally_names_every_reason_in_the_enums_order_as_plain_strings() -> None:
    reasons = list(TraceQueue(1).tally().dropped_by_reason)
    assert reasons == [reason.value for reason in DropReason]
    assert all(type(reason) is str for reason in reasons)


def test_only_error_reasons_count_as_errors_and_each_is_reported_once() -> None:
    queue = TraceQueue(10)
    for _ in range(3):
        queue.put(item())
    queue.take(3)
    queue.settle(WriteResult(dropped=Counter({DropReason.CIRCUIT_OPEN: 1, DropReason.DB_ERROR: 2}),
                             last_error="down"))
    assert queue.new_errors() == (2, "down")
    assert queue.new_errors() == (0, "down")
    assert {reason for reason in DropReason if reason.is_error} == {
        DropReason.DB_ERROR, DropReason.UNCONFIRMED, DropReason.INVALID, DropReason.MASKING_ERROR,
        DropReason.GUARD_BLOCKED, DropReason.NO_THREAD, DropReason.INTERNAL_ERROR}


def test_discard_drops_what_is_queued_under_its_reason() -> None:
    queue = TraceQueue(10)
    for _ in range(4):
        queue.put(item())
    assert queue.discard(DropReason.SHUTDOWN) == 4
    tally = queue.tally()
    assert (tally.pending, tally.dropped_by_reason["shutdown"]) == (0, 4)


_STEP = st.one_of(
    st.tuples(st.just("put"), st.integers(1, 5)),
    st.tuples(st.just("direct"), st.sampled_from([None, *DropReason])),
    st.tuples(st.just("take"), st.integers(1, 6)),
    st.tuples(st.just("discard"), st.sampled_from(list(DropReason))),
)


@settings(max_examples=300)
@given(st.lists(_STEP, max_size=40), st.randoms(use_true_random=False))
def test_the_books_balance_after_any_sequence_of_steps(steps: list[tuple[str, object]], rng: object) -> None:
    """submitted = written + dropped + duplicates + pending at every step, and pending is 0 once
    every taken batch is settled and the queue is empty."""
    import random

    assert isinstance(rng, random.Random)
    queue = TraceQueue(8)
    for kind, value in steps:
        if kind == "put":
            for _ in range(int(value)):  # type: ignore[call-overload]
                if not queue.put(item()):
                    queue.count_direct(DropReason.QUEUE_FULL)
        elif kind == "direct":
            # Inline mode: counted, then settled by its own write (no reason), or dropped at once.
            queue.count_direct(value)  # type: ignore[arg-type]
            if value is None:
                assert queue.tally().pending >= 1
                queue.settle(WriteResult(written=1))
        elif kind == "take":
            batch = queue.take(int(value))  # type: ignore[call-overload]
            written = rng.randint(0, len(batch))
            duplicates = rng.randint(0, len(batch) - written)
            dropped = Counter({rng.choice(list(DropReason)): len(batch) - written - duplicates})
            queue.settle(WriteResult(written=written, duplicates=duplicates, dropped=+dropped))
        else:
            queue.discard(value)  # type: ignore[arg-type]
        assert balanced(queue)
    queue.discard(DropReason.SHUTDOWN)
    assert queue.tally().pending == 0
