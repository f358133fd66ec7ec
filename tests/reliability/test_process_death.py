"""A writer's process dies: SIGKILL loses at most what was still pending (its queue plus the
batch in flight, so at most ``TRACE_QUEUE_SIZE`` + ``TRACE_BATCH_SIZE`` rows); a clean SIGTERM
flushes everything within ``TRACE_SHUTDOWN_TIMEOUT``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.reliability.conftest import Behind, wait_for
from tests.support.gunicorn import ROOT

pytestmark = pytest.mark.timeout(120)
COUNT, QUEUE = 20_000, 5_000


def _child(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.support.writer_child", url, str(COUNT), str(QUEUE)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


def _line(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, "the child ended without a word"
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_sigkill_loses_at_most_the_pending_rows(behind: Behind) -> None:
    behind.proxy.delay(0.01)  # a database slow enough that the writer lags behind its callers
    child = _child(behind.proxied_url)
    try:
        at_kill = _line(child)
        # Let it be mid-way: some rows stored, most still queued behind the slow database.
        assert wait_for(lambda: behind.count() > 0, 15)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.stdout:
            child.stdout.close()
    assert at_kill["event"] == "submitted" and at_kill["submitted"] == COUNT
    accepted = COUNT - at_kill["dropped"]  # dropped at record time (queue_full) never queued
    stored = behind.count()
    lost = accepted - stored
    print(f"\nSIGKILL: submitted {COUNT}, dropped before the kill {at_kill['dropped_by_reason']}, "
          f"pending at the kill {at_kill['pending']}, stored {stored}, lost {lost}")
    assert 0 < lost <= at_kill["pending"] <= QUEUE + 100


def test_sigterm_flushes_everything_within_the_deadline(behind: Behind) -> None:
    child = _child(behind.url)
    try:
        submitted = _line(child)
        started = time.monotonic()
        child.send_signal(signal.SIGTERM)
        final = _line(child)
        assert child.wait(10) == 0
        took = time.monotonic() - started
    finally:
        if child.stdout:
            child.stdout.close()
    stored = behind.count()
    print(f"\nSIGTERM: pending at the signal {submitted['pending']}, exit after {took:.2f} s, "
          f"written {final['written']}, dropped {final['dropped_by_reason']}, stored {stored}")
    assert final["event"] == "final" and final["pending"] == 0
    assert final["written"] + final["dropped"] == final["submitted"] == COUNT
    assert final["dropped"] == final["dropped_by_reason"]["queue_full"]  # none lost to the exit
    assert stored == final["written"]
    assert took < 5 + 1  # TRACE_SHUTDOWN_TIMEOUT, plus interpreter start-up slack
