"""Sampling and the kill switch at the endpoint, on MariaDB and SQLite (and the durable path on
Redis): items kept out are answered ``discarded`` with their reason, counted in ``/metrics``, and
never stored; with telemetry switched off no trace table is touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from governance.sampling import parse_sampling_policy
from tests.queue.test_durable_ingest import STREAM
from tests.support.redis_server import RedisServer
from tests.trace_service.http.test_ingest import make_ingest

POLICY = b"""version = 1
[sampling]
[[rules]]
match = "http.request.*"
rate = 0.3
"""


def test_switched_off_every_item_is_discarded_and_no_trace_table_is_touched(database_url: str) -> None:
    made = make_ingest(database_url, enabled=False)
    statements: list[str] = []
    sa.event.listen(made.app.extensions["trace_engine"], "before_cursor_execute",
                    lambda *args: statements.append(args[2]))
    try:
        response = made.post([{"event_key": "a", "severity": "error",
                               "event_id": "0b9a3b5e-7d3c-4c1f-9f65-3c1a2b4d5e6f"}, {"event_key": "b"}])
        assert response.status_code == 202
        assert response.json["discarded"] == 2 and response.json["accepted"] == 0
        assert [(i["status"], i["reason"]) for i in response.json["items"]] == [("discarded", "disabled")] * 2
        assert made.app.extensions["trace_writer"].flush(5)
        during = list(statements)  # before this test reads the table itself
        assert made.stored() == []
        metrics = made.client.get("/metrics").data.decode()
    finally:
        made.app.extensions["trace_writer"].close(2)
    assert during and not [s for s in during if "telemetry_traces" in s or "trace_ingest_events" in s]
    assert 'trace_writer_discarded_total{reason="disabled"} 2.0' in metrics


def test_sampling_at_the_endpoint_decides_as_the_writer_does(database_url: str, tmp_path: Path) -> None:
    policy_file = tmp_path / "sampling.toml"
    policy_file.write_bytes(POLICY)
    policy = parse_sampling_policy(POLICY)
    made = make_ingest(database_url, sampling_policy=str(policy_file))
    items = [{"event_key": "http.request.get", "request_id": f"r-{n}"} for n in range(200)]
    items += [{"event_key": "http.request.fail", "severity": "error", "request_id": "r-0"},
              {"event_key": "auth.login", "request_id": "r-1"}]
    try:
        response = made.post(items)
        stored = made.stored()
        metrics = made.client.get("/metrics").data.decode()
    finally:
        made.app.extensions["trace_writer"].close(2)
    assert response.status_code == 202
    expected = [policy.keeps(i["event_key"], i.get("severity", "info"), i["request_id"]) for i in items]
    answers = response.json["items"]
    assert [a["status"] == "accepted" for a in answers] == expected
    assert all(a["reason"] == "sampled_out" for a in answers if a["status"] == "discarded")
    assert expected[-2:] == [True, True]  # an error, and a key no rule names
    assert sorted(r.request_id or "" for r in stored) == sorted(
        i["request_id"] for i, kept in zip(items, expected, strict=True) if kept)
    out = expected.count(False)
    assert response.json["discarded"] == out > 0
    assert f'trace_writer_sampled_out_total{{event_key="http.request.get"}} {float(out)}' in metrics


def test_on_the_durable_path_what_is_discarded_never_reaches_the_stream(
        database_url: str, redis_server: RedisServer, tmp_path: Path) -> None:
    policy_file = tmp_path / "sampling.toml"
    policy_file.write_bytes(POLICY)
    made = make_ingest(database_url, queue_url=redis_server.url, queue_stream=STREAM,
                       sampling_policy=str(policy_file))
    items: list[dict[str, Any]] = [{"event_key": "http.request.get", "request_id": f"r-{n}"}
                                   for n in range(100)]
    try:
        response = made.post(items)
    finally:
        made.app.extensions["trace_writer"].close(2)
    accepted = response.json["accepted"]
    assert response.status_code == 202 and 0 < accepted < 100
    assert redis_server.client().xlen(STREAM) == accepted
    off = make_ingest(database_url, queue_url=redis_server.url, queue_stream=STREAM, enabled=False)
    try:
        assert off.post(items).json["discarded"] == 100
    finally:
        off.app.extensions["trace_writer"].close(2)
    assert redis_server.client().xlen(STREAM) == accepted
