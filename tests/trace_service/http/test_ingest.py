"""POST /api/telemetry/traces through the Flask test client, on MariaDB and SQLite."""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.php_schema import create_php_table
from tests.trace_service.http.test_forms import PHP_BODY
from trace_service import migrate
from trace_service.config import DatabaseURL
from trace_service.db import create_engine
from trace_service.http.app import create_app
from trace_service.http.config import TestingConfig
from trace_service.http.openapi import DOCUMENT
from trace_service.reader import StoredTrace, read_traces

URL = "/api/telemetry/traces"
V4 = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
PHP_FORM = PHP_BODY  # what PHP's http_build_query wrote on this machine (docs/php-compat.md §6)


@dataclass
class Ingest:
    app: Flask
    client: FlaskClient
    key: str
    reports_key: str

    def post(self, body: Any = None, *, key: str | None = "default", **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        token = self.key if key == "default" else key
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None and "data" not in kwargs:
            kwargs["json"] = body
        return self.client.post(URL, headers=headers, **kwargs)

    def stored(self) -> list[StoredTrace]:
        assert self.app.extensions["trace_writer"].flush(10)
        return read_traces(self.app.extensions["trace_engine"])


def make_ingest_on_layout(database_url: str, layout: str, **settings: Any) -> Ingest:
    """:func:`make_ingest` over our layout A, or over PHP's layout B made first (the migration
    adopts it)."""
    if layout == "B":
        engine = create_engine(database_url)
        create_php_table(engine, "B")
        engine.dispose()
    return make_ingest(database_url, **settings)


def make_ingest(database_url: str, **settings: Any) -> Ingest:
    app = create_app(TestingConfig(database_url=DatabaseURL(database_url), key_cache_seconds=0,
                                   **settings))
    migrate.upgrade(app.extensions["trace_engine"])
    store = app.extensions["trace_keys"]
    _, key = store.create("php-admin", ["ingest"])
    _, reports_key = store.create("compliance", ["reports:read"])
    return Ingest(app, app.test_client(), key, reports_key)


# ---------------------------------------------------------------- the body forms


def test_one_json_object(ingest: Ingest) -> None:
    response = ingest.post({"event_key": "auth.login.attempt", "severity": "WARN", "actor_admin_id": 7,
                            "metadata": {"target_id": 3}, "route_name": "admins.list"})
    assert response.status_code == 202
    assert response.json["status"] == "accepted" and response.json["accepted"] == 1
    (row,) = ingest.stored()
    assert (row.event_key, row.severity, row.actor_admin_id, row.route_name) == (
        "auth.login.attempt", "warning", 7, "admins.list")
    assert row.metadata == {"target_id": 3}


def test_a_json_batch(ingest: Ingest) -> None:
    response = ingest.post([{"event_key": f"batch.{i}"} for i in range(5)])
    assert response.status_code == 202 and response.json["accepted"] == 5
    assert [r.event_key for r in ingest.stored()] == [f"batch.{i}" for i in range(5)]


def test_a_php_http_build_query_form_is_stored_with_secrets_masked(ingest: Ingest) -> None:
    response = ingest.post(data=PHP_FORM, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 202
    (row,) = ingest.stored()
    assert (row.event_key, row.severity) == ("auth_login_failure", "warning")
    assert row.metadata is not None
    assert row.metadata["user_id"] == "5" and row.metadata["tags"] == ["a", "b"]
    assert row.metadata["password"] == "[masked]" and "hunter2" not in (row.metadata_text or "")


def test_json_sent_as_a_form_the_way_php_curl_does(ingest: Ingest) -> None:
    response = ingest.post(data=json.dumps({"event_key": "curl.default"}),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 202
    assert [r.event_key for r in ingest.stored()] == ["curl.default"]


def test_a_gzip_batch(ingest: Ingest) -> None:
    body = gzip.compress(json.dumps([{"event_key": "gz.a"}, {"event_key": "gz.b"}]).encode())
    response = ingest.post(data=body, headers={"Content-Type": "application/json",
                                               "Content-Encoding": "gzip"})
    assert response.status_code == 202
    assert [r.event_key for r in ingest.stored()] == ["gz.a", "gz.b"]


def test_secrets_in_json_metadata_are_masked(ingest: Ingest) -> None:
    ingest.post({"event_key": "x", "metadata": {"note": "Authorization: Bearer abcdefghij123456",
                                                 "card": "4111 1111 1111 1111"}})
    (row,) = ingest.stored()
    assert row.metadata is not None
    assert row.metadata["note"] == "Authorization: Bearer [masked]" and row.metadata["card"] == "[masked]"


# ---------------------------------------------------------------- fields


def test_client_ip_and_agent_from_the_body_else_the_request(ingest: Ingest) -> None:
    ingest.post([{"event_key": "a", "ip_address": "203.0.113.9", "user_agent": "php-worker/1"},
                 {"event_key": "b"}], headers={"User-Agent": "curl/8", "X-Forwarded-For": "198.51.100.1"})
    first, second = ingest.stored()
    assert (first.ip_address, first.user_agent) == ("203.0.113.9", "php-worker/1")
    assert (second.ip_address, second.user_agent) == ("127.0.0.1", "curl/8")  # no proxy trusted


def test_forwarded_for_is_used_only_behind_a_trusted_proxy(database_url: str) -> None:
    made = make_ingest(database_url, trusted_proxies=1)
    try:
        made.post({"event_key": "a"}, headers={"X-Forwarded-For": "198.51.100.1"})
        (row,) = made.stored()
        assert row.ip_address == "198.51.100.1"
    finally:
        made.app.extensions["trace_writer"].close(2)


def test_occurred_at_and_route_come_from_the_body_not_from_this_endpoint(ingest: Ingest) -> None:
    ingest.post([{"event_key": "a", "occurred_at": "2026-11-24 07:17:13.739142"},
                 {"event_key": "b", "occurred_at": "2026-11-24T05:17:13Z"}])
    first, second = ingest.stored()
    assert first.occurred_at == "2026-11-24 07:17:13.739142"
    assert second.occurred_at == "2026-11-24 05:17:13.000000"  # the table is UTC here
    assert first.route_name is None


def test_request_id_is_honoured_replaced_and_echoed(ingest: Ingest) -> None:
    kept = ingest.post({"event_key": "a"}, headers={"X-Request-ID": V4.upper()})
    assert kept.headers["X-Request-ID"] == V4 and kept.json["request_id"] == V4
    replaced = ingest.post({"event_key": "b"}, headers={"X-Request-ID": "not-a-uuid"})
    new = replaced.headers["X-Request-ID"]
    assert uuid.UUID(new).version == 4 and new != "not-a-uuid"
    explicit = ingest.post({"event_key": "c", "request_id": "php-req-1"})
    refused = ingest.post({"event_key": "x"}, key=None, headers={"X-Request-ID": V4})
    assert refused.headers["X-Request-ID"] == V4
    assert explicit.status_code == 202
    assert [r.request_id for r in ingest.stored()] == [V4, new, "php-req-1"]


def test_a_repeated_event_id_is_accepted_once_and_stored_once(ingest: Ingest) -> None:
    event = {"event_key": "retry.me", "event_id": str(uuid.uuid4())}
    assert ingest.post(event).json["status"] == "accepted"
    assert ingest.app.extensions["trace_writer"].flush(10)  # "duplicate" means: first copy stored
    again = ingest.post([event, {"event_key": "other"}])
    assert again.status_code == 202
    assert [i["status"] for i in again.json["items"]] == ["duplicate", "accepted"]
    assert [r.event_key for r in ingest.stored()] == ["retry.me", "other"]


def test_each_rejected_item_says_which_field_and_why(ingest: Ingest) -> None:
    response = ingest.post([{"event_key": "ok"}, {"event_key": ""}, {"severity": "info"},
                            {"event_key": "x", "actor_admin_id": "seven"}, {"event_key": "x", "colour": 1},
                            "not an object", {"event_key": "x", "ip_address": "999.1.1.1"}])
    assert response.status_code == 202
    errors = [item.get("errors") for item in response.json["items"]]
    assert errors[0] is None
    assert "event_key" in errors[1] and "event_key" in errors[2]
    assert "actor_admin_id" in errors[3] and "colour" in errors[4]
    assert "_item" in errors[5] and "ip_address" in errors[6]
    assert response.json["accepted"] == 1 and response.json["rejected"] == 6


# ---------------------------------------------------------------- every status


def test_400_malformed(ingest: Ingest) -> None:
    response = ingest.post(data="{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json["error"]


@pytest.mark.parametrize("token", [None, "tsk_unknown", ""])
def test_401_without_a_valid_key(ingest: Ingest, token: str | None) -> None:
    response = ingest.post({"event_key": "a"}, key=token)
    assert response.status_code == 401 and "API key" in response.json["error"]
    assert ingest.stored() == []


def test_401_after_revocation(ingest: Ingest) -> None:
    store = ingest.app.extensions["trace_keys"]
    (key,) = [k for k in store.list() if k.name == "php-admin"]
    assert ingest.post({"event_key": "a"}).status_code == 202
    store.revoke(key.id)
    assert ingest.post({"event_key": "b"}).status_code == 401


def test_403_key_without_ingest_scope(ingest: Ingest) -> None:
    response = ingest.post({"event_key": "a"}, key=ingest.reports_key)
    assert response.status_code == 403 and "no 'ingest' scope" in response.json["error"]


def test_413_body_and_batch_limits(database_url: str) -> None:
    made = make_ingest(database_url, ingest_max_bytes=2048, ingest_max_items=3)
    try:
        big = made.post({"event_key": "a", "metadata": {"pad": "x" * 5000}})
        assert big.status_code == 413 and big.json["status"] == 413
        many = made.post([{"event_key": "a"}] * 4)
        assert many.status_code == 413 and "at most 3" in many.json["error"]
        assert made.stored() == []
    finally:
        made.app.extensions["trace_writer"].close(2)


def test_415_unsupported_type(ingest: Ingest) -> None:
    response = ingest.post(data="<trace/>", headers={"Content-Type": "application/xml"})
    assert response.status_code == 415 and "application/json" in response.json["error"]


def test_422_nothing_valid(ingest: Ingest) -> None:
    response = ingest.post([{"event_key": ""}, {"nope": 1}])
    assert response.status_code == 422 and response.json["accepted"] == 0


def test_429_over_the_keys_rate_with_retry_after(database_url: str) -> None:
    made = make_ingest(database_url, ingest_rate="3/minute")
    try:
        codes = [made.post({"event_key": f"r{i}"}).status_code for i in range(4)]
        assert codes == [202, 202, 202, 429]
        limited = made.post({"event_key": "r"})
        assert int(limited.headers["Retry-After"]) > 0 and "rate limit" in limited.json["error"]
        assert len(made.stored()) == 3
    finally:
        made.app.extensions["trace_writer"].close(2)


def test_429_after_repeated_auth_failures_from_one_address(database_url: str) -> None:
    made = make_ingest(database_url, auth_failure_rate="2/minute")
    try:
        codes = [made.post({"event_key": "a"}, key="tsk_wrong").status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        assert made.post({"event_key": "a"}).status_code == 429  # even with a good key, for now
        metrics = made.client.get("/metrics").data.decode()
        assert "trace_ingest_auth_failures_total 2.0" in metrics
    finally:
        made.app.extensions["trace_writer"].close(2)


def test_503_when_the_queue_is_full(database_url: str) -> None:
    made = make_ingest(database_url, queue_size=3, batch_size=1)
    try:
        made.app.extensions["trace_writer"]._worker.start = lambda: True  # nothing drains
        assert made.post([{"event_key": "a"}, {"event_key": "b"}]).status_code == 202
        full = made.post([{"event_key": "c"}, {"event_key": "d"}])
        assert full.status_code == 503 and full.headers["Retry-After"] == "1"
        assert "nothing was stored" in full.json["error"]
    finally:
        writer = made.app.extensions["trace_writer"]
        del writer._worker.start
        writer._worker.start()
        writer.close(5)
        assert writer.stats().written == 2


def test_503_while_the_database_is_down(ingest: Ingest) -> None:
    worker = ingest.app.extensions["trace_writer"]._worker
    worker.accepting = False
    import time

    worker.breaker.retry_at = time.monotonic() + 3.2
    response = ingest.post({"event_key": "a"})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) in (3, 4)
    worker.accepting = True


def test_unexpected_errors_are_json_500s_with_the_request_id(
    ingest: Ingest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trace_service.http.ingest as module

    def broken(item: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(module, "load_trace", broken)
    response = ingest.post({"event_key": "a"}, headers={"X-Request-ID": V4})
    assert response.status_code == 500 and response.json["request_id"] == V4
    assert "bug" not in response.json["error"]


# ---------------------------------------------------------------- keys, metrics, OpenAPI


def test_keys_cli_creates_lists_and_revokes(ingest: Ingest) -> None:
    runner = ingest.app.test_cli_runner()
    created = runner.invoke(args=["keys", "create", "--name", "billing-svc", "--scope", "ingest"])
    assert created.exit_code == 0
    token = created.output.split("key: ")[1].split()[0]
    assert ingest.post({"event_key": "a"}, key=token).status_code == 202
    listed = runner.invoke(args=["keys", "list"]).output
    assert "billing-svc" in listed and token not in listed and token[:12] in listed
    key_id = [line.split()[0] for line in listed.splitlines() if "billing-svc" in line][0]
    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code == 0
    assert ingest.post({"event_key": "a"}, key=token).status_code == 401
    again = runner.invoke(args=["keys", "revoke", key_id])
    assert again.exit_code == 1 and "no active key" in again.output
    bad = runner.invoke(args=["keys", "create", "--name", "x", "--scope", "root"])
    assert bad.exit_code == 2 and "--scope" in bad.output


def test_metrics_count_what_happened(ingest: Ingest) -> None:
    ingest.post([{"event_key": "a"}, {"event_key": ""}])
    ingest.stored()
    text = ingest.client.get("/metrics").data.decode()
    assert "trace_ingest_received_total 2.0" in text and "trace_ingest_accepted_total 1.0" in text
    assert 'trace_ingest_rejected_total{reason="invalid_item"} 1.0' in text
    assert "trace_writer_written_total 1.0" in text
    assert 'trace_writer_dropped_total{reason="queue_full"}' in text
    assert "trace_ingest_request_seconds_bucket" in text


def test_openapi_document_lists_exactly_the_statuses_the_endpoint_produces(ingest: Ingest) -> None:
    served = ingest.client.get("/api/openapi.json").json
    assert served == json.loads(json.dumps(DOCUMENT))
    documented = set(served["paths"][URL]["post"]["responses"])
    assert documented == {"202", "400", "401", "403", "408", "413", "415", "422", "429", "503"}
    # each of these is produced by a test above: test_400_..., test_401_..., ... test_503_...
    # (408: tests/trace_service/http/test_body_deadline.py)


def test_auth_failures_are_logged_without_the_key(ingest: Ingest, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="trace_service.http.ingest"):
        ingest.post({"event_key": "a"}, key="tsk_guessed_secret_value")
    assert "ingest refused a request from 127.0.0.1 (401)" in caplog.text
    assert "tsk_guessed_secret_value" not in caplog.text


def test_two_threads_cannot_both_take_the_last_room_in_the_queue(database_url: str) -> None:
    """gunicorn's gthread workers serve requests in threads: each request must see the room its
    whole batch needs and fill it before another checks, so a batch is all accepted or a 503."""
    made = make_ingest(database_url, queue_size=9, batch_size=1)
    writer = made.app.extensions["trace_writer"]
    writer._worker.start = lambda: True  # nothing drains
    record = writer.record
    first = threading.Event()

    def slow_record(*args: Any, **kwargs: Any) -> bool:
        if not first.is_set():
            first.set()
            time.sleep(0.3)  # the other request runs its room check meanwhile, unless it waits
        return bool(record(*args, **kwargs))

    writer.record = slow_record
    answers: list[Any] = []

    def post(prefix: str) -> None:
        client = made.app.test_client()
        answers.append(client.post(URL, json=[{"event_key": f"{prefix}.{n}"} for n in range(6)],
                                   headers={"Authorization": f"Bearer {made.key}"}))

    try:
        threads = [threading.Thread(target=post, args=(name,)) for name in ("a", "b")]
        threads[0].start()
        assert first.wait(10)
        threads[1].start()
        for thread in threads:
            thread.join(10)
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [202, 503], [answer.json for answer in answers]
        accepted = next(answer for answer in answers if answer.status_code == 202)
        assert accepted.json["accepted"] == 6 and accepted.json["dropped"] == 0
        assert writer.stats().dropped == 0
    finally:
        del writer.record
        del writer._worker.start
        writer._worker.start()
        writer.close(5)
        assert writer.stats().written == 6
