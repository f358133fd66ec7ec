"""Sampling and the kill switch in the writer, on MariaDB and SQLite: what is kept is stored
whole per request, what is not is counted as discarded (not lost), and a writer switched off
touches no connection."""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from trace_service import migrate
from trace_service.config import DatabaseURL, WriterConfig
from trace_service.controls import KillSwitch
from trace_service.db import create_engine
from trace_service.reader import read_traces
from trace_service.writer import TraceWriter

REQUESTS = 20_000
TEN_PERCENT = b"""version = 1
[sampling]
default_rate = 1.0
always_keep_from = "warning"
[[rules]]
match = "http.request.*"
rate = 0.1
"""


def writer_on(url: str, tmp_path: Path, **settings: Any) -> TraceWriter:
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    config = WriterConfig(database_url=DatabaseURL(url), queue_size=100_000, **settings)
    return TraceWriter.from_config(config, strict=True)


def test_a_ten_percent_policy_keeps_whole_requests_within_binomial_bounds(
        database_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "sampling.toml"
    policy.write_bytes(TEN_PERCENT)
    writer = writer_on(database_url, tmp_path, sampling_policy=str(policy))
    loud = set(range(0, REQUESTS, 97))  # requests that also log a warning and an error
    try:
        for n in range(REQUESTS):
            request_id = f"req-{n:06d}"
            for key in ("http.request.start", "http.request.end"):
                writer.record(key, request_id=request_id)
            if n in loud:
                writer.record("http.request.slow", severity="warning", request_id=request_id)
                writer.record("http.request.failed", severity="ERROR", request_id=request_id)
            if n % 1000 == 0:
                writer.record("auth.login", request_id=request_id)  # no rule: the default, 1.0
        assert writer.flush(60)
        stats = writer.stats()
    finally:
        writer.close(5)
    rows = read_traces(create_engine(database_url))
    by_request: dict[str, Counter[str]] = {}
    for row in rows:
        by_request.setdefault(row.request_id or "", Counter())[row.event_key] += 1
    kept = {r for r, keys in by_request.items() if keys["http.request.start"]}
    # Every trace of a kept request, none of a dropped one.
    for request_id, keys in by_request.items():
        assert keys["http.request.start"] == keys["http.request.end"] == (request_id in kept)
    sd = math.sqrt(REQUESTS * 0.1 * 0.9)
    assert abs(len(kept) - REQUESTS * 0.1) <= 5 * sd, len(kept)
    # Warnings and errors always, and keys no rule names at the default rate.
    assert {r for r, keys in by_request.items() if keys["http.request.slow"]} == \
        {f"req-{n:06d}" for n in loud}
    assert sum(keys["http.request.failed"] for keys in by_request.values()) == len(loud)
    assert sum(keys["auth.login"] for keys in by_request.values()) == REQUESTS // 1000
    # The rest is counted as sampled out, by key, and not as a loss.
    sampled_out = 2 * (REQUESTS - len(kept))
    assert stats.discarded_by_reason == {"sampled_out": sampled_out, "disabled": 0, "opted_out": 0}
    assert stats.sampled_out_by_key == {"http.request.start": sampled_out // 2,
                                        "http.request.end": sampled_out // 2}
    assert stats.dropped == 0 and stats.pending == 0 and stats.written == len(rows)
    assert stats.submitted == stats.written + sampled_out


def test_a_writer_switched_off_stores_nothing_and_touches_no_connection(
        database_url: str, tmp_path: Path) -> None:
    writer = writer_on(database_url, tmp_path, enabled=False)
    assert writer.engine is not None
    checkouts: list[object] = []
    sa.event.listen(writer.engine.pool, "checkout", lambda *args: checkouts.append(args))
    sa.event.listen(writer.engine.pool, "connect", lambda *args: checkouts.append(args))
    try:
        results = [writer.record("x.off", severity="error", metadata={"n": n}) for n in range(100)]
        assert writer.flush(5)
        stats = writer.stats()
    finally:
        writer.close(2)
    assert results == [False] * 100 and checkouts == []
    assert stats.discarded_by_reason["disabled"] == 100 and stats.written == stats.dropped == 0
    assert read_traces(create_engine(database_url)) == []


def until(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_the_kill_switch_file_turns_telemetry_off_and_on_without_a_restart(
        sqlite_url: str, tmp_path: Path) -> None:
    switch = tmp_path / "telemetry-off"
    writer = writer_on(sqlite_url, tmp_path, kill_switch_file=str(switch), controls_refresh=0.1)
    try:
        assert writer.record("x.before")
        switch.touch()
        assert until(lambda: not writer.record("x.probe"))  # seen within the refresh
        assert not writer.record("x.while_off")
        switch.unlink()
        assert until(lambda: writer.record("x.probe"))
        assert writer.record("x.after")
        assert writer.flush(5)
        stats = writer.stats()
    finally:
        writer.close(2)
    keys = [row.event_key for row in read_traces(create_engine(sqlite_url))]
    assert "x.while_off" not in keys and keys[0] == "x.before" and keys[-1] == "x.after"
    assert stats.discarded_by_reason["disabled"] >= 1 and stats.dropped == 0


def test_the_switch_file_is_looked_at_once_per_refresh(tmp_path: Path) -> None:
    now = [100.0]
    switch = KillSwitch(True, str(tmp_path / "off"), refresh=5.0, clock=lambda: now[0])
    assert not switch.off()
    (tmp_path / "off").touch()
    now[0] += 4.9
    assert not switch.off()  # not looked at again yet
    now[0] += 0.1
    assert switch.off()
    assert KillSwitch(False).off() and not KillSwitch(True).off()


def test_a_relative_kill_switch_path_is_refused_naming_the_setting() -> None:
    with pytest.raises(Exception, match="TRACE_KILL_SWITCH_FILE.*absolute path"):
        WriterConfig.from_env({"TRACE_KILL_SWITCH_FILE": "off"})
