"""POST /v1/logs and /v1/traces (OTLP/HTTP) through the Flask test client, on MariaDB and SQLite
(and the durable path on Redis): both encodings, gzip, partial success, every refusal, retries
stored once, metadata masked, discards that are not rejections."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.rpc.error_details_pb2 import BadRequest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.proto.trace.v1.trace_pb2 import Status as SpanStatus

from tests.queue.test_durable_ingest import STREAM
from tests.support.redis_server import RedisServer
from tests.trace_service.http.test_ingest import Ingest, make_ingest
from tests.trace_service.test_otlp_mapping import otlp_json
from trace_service.otlp_mapping import span_event_id
from trace_service.stream_entry import FIELD, decode_entry

PROTOBUF, JSON = "application/x-protobuf", "application/json"
TRACE_ID = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
T0 = 1_764_000_000_000_000_000  # 2025-11-24 16:00:00 UTC
RESOURCE = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="billing")),
                                KeyValue(key="db.password", value=AnyValue(string_value="s3cr3t-pw"))])
SCOPE = InstrumentationScope(name="billing.api", version="1.4")


def text(value: str) -> AnyValue:
    return AnyValue(string_value=value)


def log_record(n: int, **fields: Any) -> LogRecord:
    defaults: dict[str, Any] = {
        "time_unix_nano": T0 + n * 1000, "severity_number": 13, "body": text(f"payment.retry.{n}"),
        "trace_id": TRACE_ID, "attributes": [KeyValue(key="attempt", value=AnyValue(int_value=n)),
                                             KeyValue(key="password", value=text("hunter2"))]}
    return LogRecord(**{**defaults, **fields})


def logs_request(*records: LogRecord) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=RESOURCE, scope_logs=[ScopeLogs(scope=SCOPE, log_records=records)])])


def span(n: int, **fields: Any) -> Span:
    defaults: dict[str, Any] = {
        "name": f"checkout.step.{n}", "trace_id": TRACE_ID, "span_id": bytes([1, 2, 3, 4, 5, 6, 7, n + 1]),
        "start_time_unix_nano": T0, "end_time_unix_nano": T0 + 2_000_000 * (n + 1),
        "kind": Span.SPAN_KIND_SERVER,
        "attributes": [KeyValue(key="api_key", value=text("sk_live_51HxFaKeKeYvAlUe000000"))]}
    return Span(**{**defaults, **fields})


def traces_request(*spans: Span) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=RESOURCE, scope_spans=[ScopeSpans(scope=SCOPE, spans=spans)])])


def post(ingest: Ingest, path: str, message: Any, encoding: str = PROTOBUF, *,
         key: str | None = "default", headers: dict[str, str] | None = None, gzipped: bool = False) -> Any:
    body = message.SerializeToString() if encoding == PROTOBUF else json.dumps(otlp_json(message)).encode()
    sent = {"Content-Type": encoding, **(headers or {})}
    if gzipped:
        body, sent["Content-Encoding"] = gzip.compress(body), "gzip"
    token = ingest.key if key == "default" else key
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return ingest.client.post(path, data=body, headers=sent)


def answer(response: Any, message_type: Any) -> Any:
    """The response body parsed in the encoding its Content-Type names."""
    message = message_type()
    if response.content_type == PROTOBUF:
        message.ParseFromString(response.data)
    else:
        assert response.content_type == JSON
        json_format.Parse(response.data, message)
    return message


# ---------------------------------------------------------------- what is stored


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_log_records_are_stored_with_the_mapped_fields_and_masked_metadata(
        ingest: Ingest, encoding: str) -> None:
    response = post(ingest, "/v1/logs", logs_request(log_record(0), log_record(1, severity_number=17)),
                    encoding, headers={"User-Agent": "OTel-OTLP-Exporter-Python/1.45"})
    assert response.status_code == 200 and response.content_type == encoding
    assert not answer(response, ExportLogsServiceResponse).HasField("partial_success")
    first, second = ingest.stored()
    assert (first.event_key, first.severity, second.event_key, second.severity) == (
        "payment.retry.0", "warning", "payment.retry.1", "error")
    assert first.request_id == second.request_id == TRACE_ID.hex()
    assert first.occurred_at == "2025-11-24 16:00:00.000000" and second.occurred_at.endswith(".000001")
    assert (first.user_agent, first.ip_address) == ("OTel-OTLP-Exporter-Python/1.45", "127.0.0.1")
    assert first.metadata is not None
    assert first.metadata["attributes"] == {"attempt": 0, "password": "[masked]"}
    assert first.metadata["resource"] == {"service.name": "billing", "db.password": "[masked]"}
    assert first.metadata["scope"] == {"name": "billing.api", "version": "1.4"}
    assert "hunter2" not in (first.metadata_text or "") and "s3cr3t" not in (first.metadata_text or "")


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_spans_are_stored_at_their_end_with_their_status_as_severity(ingest: Ingest, encoding: str) -> None:
    failed = span(1, status=SpanStatus(code=SpanStatus.STATUS_CODE_ERROR, message="declined"),
                  parent_span_id=bytes([1, 2, 3, 4, 5, 6, 7, 1]))
    response = post(ingest, "/v1/traces", traces_request(span(0), failed), encoding)
    assert response.status_code == 200
    assert not answer(response, ExportTraceServiceResponse).HasField("partial_success")
    ok, bad = ingest.stored()
    assert (ok.event_key, ok.severity, bad.event_key, bad.severity) == (
        "checkout.step.0", "info", "checkout.step.1", "error")
    assert ok.occurred_at == "2025-11-24 16:00:00.002000" and ok.request_id == TRACE_ID.hex()
    assert ok.metadata is not None and bad.metadata is not None
    assert ok.metadata["duration_ms"] == 2 and ok.metadata["kind"] == "server"
    assert ok.metadata["attributes"] == {"api_key": "[masked]"}
    assert (bad.metadata["span_id"], bad.metadata["parent_span_id"], bad.metadata["status_message"]) == (
        "0102030405060702", "0102030405060701", "declined")


def test_a_gzip_body_in_either_encoding(ingest: Ingest) -> None:
    assert post(ingest, "/v1/logs", logs_request(log_record(0)), gzipped=True).status_code == 200
    assert post(ingest, "/v1/traces", traces_request(span(0)), JSON, gzipped=True).status_code == 200
    assert sorted(r.event_key for r in ingest.stored()) == ["checkout.step.0", "payment.retry.0"]


def test_an_exporter_retrying_the_same_batch_is_stored_once(ingest: Ingest) -> None:
    logs, spans = logs_request(log_record(0), log_record(1)), traces_request(span(0), span(1))
    for _ in range(2):  # the retry arrives while the first copy may still be queued
        assert post(ingest, "/v1/logs", logs).status_code == 200
        assert post(ingest, "/v1/traces", spans, JSON).status_code == 200
    assert ingest.app.extensions["trace_writer"].flush(10)
    # ... and once the first copy is committed, in the other encoding
    assert post(ingest, "/v1/logs", logs, JSON).status_code == 200
    assert post(ingest, "/v1/traces", spans).status_code == 200
    assert sorted(r.event_key for r in ingest.stored()) == [
        "checkout.step.0", "checkout.step.1", "payment.retry.0", "payment.retry.1"]
    # (each copy was skipped by the endpoint, its first copy committed, or by the writer, still
    # queued: which depends on timing, the one row does not)


def test_an_empty_request_is_a_success(ingest: Ingest) -> None:
    empty: list[tuple[str, Any]] = [("/v1/logs", ExportLogsServiceRequest()),
                                    ("/v1/traces", ExportTraceServiceRequest())]
    for path, message in empty:
        for encoding in (PROTOBUF, JSON):
            response = post(ingest, path, message, encoding)
            assert response.status_code == 200 and response.data in (b"", b"{}")
    assert ingest.stored() == []


# ---------------------------------------------------------------- partial success


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_rejected_records_are_counted_in_partial_success_and_the_rest_stored(
        ingest: Ingest, encoding: str) -> None:
    logs = logs_request(log_record(0), log_record(1, trace_id=b"\x01" * 5), log_record(2),
                        log_record(3, event_name="x" * 300))
    response = post(ingest, "/v1/logs", logs, encoding)
    assert response.status_code == 200
    partial = answer(response, ExportLogsServiceResponse).partial_success
    assert partial.rejected_log_records == 2
    assert "rejected 2 of 4 log records" in partial.error_message
    assert "logRecords[1]: trace_id is 5 bytes" in partial.error_message
    assert "logRecords[3]: event_name is 300 characters" in partial.error_message
    spans = post(ingest, "/v1/traces", traces_request(span(0, name=""), span(1)), encoding)
    partial_spans = answer(spans, ExportTraceServiceResponse).partial_success
    assert (spans.status_code, partial_spans.rejected_spans) == (200, 1)
    assert "spans[0]: the span has no name" in partial_spans.error_message
    assert sorted(r.event_key for r in ingest.stored()) == [
        "checkout.step.1", "payment.retry.0", "payment.retry.2"]


def test_a_json_record_that_is_not_otlp_json_is_rejected_alone(ingest: Ingest) -> None:
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "json.ok"}},
        {"body": {"stringValue": "json.b64"}, "traceId": "S/kvNXezTaajzpKdDg5HNg=="},
        {"body": {"stringValue": "json.time"}, "timeUnixNano": "yesterday"}]}]}]}
    response = ingest.client.post("/v1/logs", data=json.dumps(body), headers={
        "Content-Type": JSON, "Authorization": f"Bearer {ingest.key}"})
    partial = json.loads(response.data)["partialSuccess"]
    assert response.status_code == 200 and partial["rejectedLogRecords"] == "2"  # int64: a string
    assert "hex string" in partial["errorMessage"]
    assert [r.event_key for r in ingest.stored()] == ["json.ok"]


def test_records_kept_out_on_purpose_are_not_rejections(database_url: str) -> None:
    made = make_ingest(database_url, enabled=False)
    try:
        response = post(made, "/v1/logs", logs_request(log_record(0), log_record(1)))
        assert response.status_code == 200 and response.data == b""  # full success
        assert made.stored() == []
        metrics = made.client.get("/metrics").data.decode()
    finally:
        made.app.extensions["trace_writer"].close(2)
    assert 'trace_writer_discarded_total{reason="disabled"} 2.0' in metrics


def test_sampling_decides_per_trace_id_as_for_every_trace(database_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "sampling.toml"
    policy.write_text('version = 1\n[sampling]\ndefault_rate = 0.0\n')
    made = make_ingest(database_url, sampling_policy=str(policy))
    try:
        response = post(made, "/v1/traces", traces_request(
            span(0), span(1, status=SpanStatus(code=SpanStatus.STATUS_CODE_ERROR))))
        assert response.status_code == 200 and response.data == b""
        assert [r.event_key for r in made.stored()] == ["checkout.step.1"]  # errors are always kept
    finally:
        made.app.extensions["trace_writer"].close(2)


def test_metrics_count_what_was_received_accepted_and_rejected(ingest: Ingest) -> None:
    post(ingest, "/v1/logs", logs_request(log_record(0), log_record(1, span_id=b"\x01")))
    post(ingest, "/v1/logs", logs_request(log_record(2)), key="tsk_wrong")
    ingest.stored()
    metrics = ingest.client.get("/metrics").data.decode()
    assert "trace_ingest_received_total 2.0" in metrics and "trace_ingest_accepted_total 1.0" in metrics
    assert 'trace_ingest_rejected_total{reason="invalid_item"} 1.0' in metrics
    assert 'trace_ingest_rejected_total{reason="401"} 1.0' in metrics


# ---------------------------------------------------------------- refusals


def status_of(response: Any) -> Status:
    return answer(response, Status)  # type: ignore[no-any-return]


@pytest.mark.parametrize("encoding", [PROTOBUF, JSON])
def test_400_an_undecodable_body_with_a_status_in_the_request_s_encoding(
        ingest: Ingest, encoding: str) -> None:
    response = ingest.client.post("/v1/logs", data=b"\x0a\xff\xff\xff", headers={
        "Content-Type": encoding, "Authorization": f"Bearer {ingest.key}"})
    assert response.status_code == 400 and response.content_type == encoding
    status = status_of(response)
    assert status.code == 3 and ("not a protobuf" in status.message or "not valid" in status.message)
    detail = BadRequest()
    assert status.details[0].Unpack(detail) and detail.field_violations[0].description == status.message


@pytest.mark.parametrize("body", [b"[]", b'{"resourceLogs": {}}', b'{"resourceLogs": [{"scopeLogs": [5]}]}',
                                  b'{"resourceLogs": [{"resource": "svc"}]}', b'{"a": NaN}'])
def test_400_json_that_is_not_an_export_request(ingest: Ingest, body: bytes) -> None:
    response = ingest.client.post("/v1/logs", data=body, headers={
        "Content-Type": JSON, "Authorization": f"Bearer {ingest.key}"})
    status = json.loads(response.data)
    assert response.status_code == 400 and status["code"] == 3 and status["message"]


@pytest.mark.parametrize("token", [None, "tsk_unknown"])
def test_401_without_a_valid_key_and_the_key_is_not_echoed(ingest: Ingest, token: str | None) -> None:
    response = post(ingest, "/v1/logs", logs_request(log_record(0)), key=token)
    assert response.status_code == 401 and response.content_type == PROTOBUF
    assert "API key" in status_of(response).message and b"tsk_unknown" not in response.data
    assert ingest.stored() == []


def test_403_a_key_without_the_ingest_scope(ingest: Ingest) -> None:
    response = post(ingest, "/v1/traces", traces_request(span(0)), JSON, key=ingest.reports_key)
    assert response.status_code == 403 and "no 'ingest' scope" in response.json["message"]


def test_413_a_body_over_the_limit_even_once_decompressed(database_url: str) -> None:
    made = make_ingest(database_url, ingest_max_bytes=4096, ingest_max_items=10)
    try:
        big = logs_request(*[log_record(n) for n in range(100)])
        plain = post(made, "/v1/logs", big)
        zipped = post(made, "/v1/logs", big, gzipped=True)
        assert (plain.status_code, zipped.status_code) == (413, 413)
        assert "TRACE_INGEST_MAX_BYTES" in status_of(plain).message
        assert "decompressed body is over 4096 bytes" in status_of(zipped).message
        # the item limit of the JSON endpoint does not apply: exporters batch 512 and more
        assert post(made, "/v1/logs", logs_request(*[log_record(n, attributes=[]) for n in range(40)]),
                    gzipped=True).status_code == 200
    finally:
        made.app.extensions["trace_writer"].close(2)


@pytest.mark.parametrize(("content_type", "encoding", "expected"), [
    ("text/plain", None, "not OTLP/HTTP"), ("application/protobuf", None, "not OTLP/HTTP"),
    (PROTOBUF, "br", "Content-Encoding 'br'")])
def test_415_another_content_type_or_encoding(ingest: Ingest, content_type: str, encoding: str | None,
                                              expected: str) -> None:
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {ingest.key}"}
    if encoding:
        headers["Content-Encoding"] = encoding
    response = ingest.client.post("/v1/logs", data=logs_request(log_record(0)).SerializeToString(),
                                  headers=headers)
    assert response.status_code == 415 and expected in status_of(response).message


def test_429_over_the_key_s_rate_with_retry_after(database_url: str) -> None:
    made = make_ingest(database_url, ingest_rate="2/minute")
    try:
        codes = [post(made, "/v1/logs", logs_request(log_record(n))).status_code for n in range(3)]
        assert codes == [200, 200, 429]
        limited = post(made, "/v1/traces", traces_request(span(0)), JSON)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
        assert "rate limit" in limited.json["message"]
    finally:
        made.app.extensions["trace_writer"].close(2)


def test_503_when_the_queue_is_full_and_nothing_is_stored(database_url: str) -> None:
    made = make_ingest(database_url, queue_size=3, batch_size=1)
    writer = made.app.extensions["trace_writer"]
    try:
        writer._worker.start = lambda: True  # nothing drains
        full = post(made, "/v1/logs", logs_request(*[log_record(n) for n in range(4)]))
        assert full.status_code == 503 and full.headers["Retry-After"] == "1"
        assert "nothing was stored" in status_of(full).message
    finally:
        del writer._worker.start
        writer._worker.start()
        writer.close(5)
    assert writer.stats().written == 0


def test_503_while_the_database_is_down(ingest: Ingest) -> None:
    worker = ingest.app.extensions["trace_writer"]._worker
    worker.accepting = False
    worker.breaker.retry_at = time.monotonic() + 3.2
    try:
        response = post(ingest, "/v1/traces", traces_request(span(0)), JSON)
    finally:
        worker.accepting = True
    assert response.status_code == 503 and int(response.headers["Retry-After"]) in (3, 4)
    assert response.json["code"] == 14


def test_a_bug_is_a_500_status_without_its_text(ingest: Ingest, monkeypatch: pytest.MonkeyPatch) -> None:
    import trace_service.http.otlp as module

    def broken(*args: Any) -> Any:
        raise RuntimeError("internal detail")

    monkeypatch.setattr(module, "store", broken)
    response = post(ingest, "/v1/logs", logs_request(log_record(0)))
    assert response.status_code == 500 and b"internal detail" not in response.data
    assert status_of(response).message == "unexpected error; it was logged"


def test_the_openapi_document_lists_the_statuses_the_receiver_produces(ingest: Ingest) -> None:
    served = json.loads(ingest.client.get("/api/openapi.json").data)
    for path in ("/v1/logs", "/v1/traces"):
        operation = served["paths"][path]["post"]
        assert set(operation["responses"]) == {"200", "400", "401", "403", "408", "413", "415", "429",
                                               "503"}
        assert set(operation["requestBody"]["content"]) == {PROTOBUF, JSON}
    # each is produced by a test above (408: tests/trace_service/http/test_body_deadline.py)


# ---------------------------------------------------------------- the durable path


def test_on_the_durable_path_redis_holds_masked_traces_under_their_derived_ids(
        database_url: str, redis_server: RedisServer) -> None:
    made = make_ingest(database_url, queue_url=redis_server.url, queue_stream=STREAM)
    try:
        response = post(made, "/v1/traces", traces_request(span(0), span(1, trace_id=b"\x02")))
    finally:
        made.app.extensions["trace_writer"].close(2)
    assert response.status_code == 200
    assert answer(response, ExportTraceServiceResponse).partial_success.rejected_spans == 1
    ((_id, fields),) = redis_server.client().xrange(STREAM)
    item = decode_entry(fields[FIELD])
    assert item.event_id == span_event_id(TRACE_ID.hex(), "0102030405060701")
    assert item.event_key == "checkout.step.0" and "sk_live" not in fields[FIELD].decode()
