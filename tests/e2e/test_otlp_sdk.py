"""End to end: the real OpenTelemetry Python SDK exports to the service under a real gunicorn.

The SDK's OTLP/HTTP exporters are configured only as an operator would, through
``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``OTEL_EXPORTER_OTLP_HEADERS`` (the key header); every log
record and span is stored in MariaDB with the mapped fields, its time in the table's zone and its
metadata masked. Then a batch made by the SDK's own encoder, altered to hold one invalid record,
is posted with the same headers: the answer is a 200 whose protobuf body is a ``partial_success``
counting exactly that record.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.re import parse_env_headers

from tests.support.gunicorn import free_port, start_gunicorn, stop_gunicorn
from trace_service import migrate
from trace_service.db import create_engine
from trace_service.http.keys import KeyStore
from trace_service.reader import StoredTrace, read_traces

ZONE = "Europe/Paris"  # not UTC: the rows' times must be converted to the table's zone


@dataclass
class Service:
    url: str
    endpoint: str


@pytest.fixture
def service(mariadb_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The app under gunicorn on MariaDB, and the two variables an operator sets for the SDK."""
    engine = create_engine(mariadb_url)
    migrate.upgrade(engine)
    _, key = KeyStore(engine).create("otel-sdk", ["ingest"])
    engine.dispose()
    port = free_port()
    try:
        process = start_gunicorn(mariadb_url, port, env={"TRACE_TABLE_TIMEZONE": ZONE})
    except RuntimeError as exc:
        pytest.fail(str(exc))
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{key}")
    try:
        yield Service(mariadb_url, endpoint)
    finally:
        if process.poll() is None:
            stop_gunicorn(process)


class RecordingLogExporter(OTLPLogExporter):
    """The SDK's exporter as it comes (no arguments: the environment configures it), keeping
    what each export returned."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[LogRecordExportResult] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = super().export(batch)
        self.results.append(result)
        return result


class RecordingSpanExporter(OTLPSpanExporter):
    """As :class:`RecordingLogExporter`, for spans."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        self.results.append(result)
        return result


def rows(url: str, count: int, timeout: float = 20.0) -> dict[str, StoredTrace]:
    """The stored rows by event key, once there are ``count`` (the workers write within their
    flush interval)."""
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            found = read_traces(engine)
            if len(found) >= count or time.monotonic() > deadline:
                return {row.event_key: row for row in found}
            time.sleep(0.1)
    finally:
        engine.dispose()


def wall(nanos: int) -> str:
    """The table's wall-clock text of an instant (TRACE_TABLE_TIMEZONE)."""
    seconds, rest = divmod(nanos, 10**9)  # exact: a float of nanoseconds rounds the microseconds
    moment = datetime.fromtimestamp(seconds, ZoneInfo(ZONE)) + timedelta(microseconds=rest // 1000)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


RESOURCE = Resource.create({"service.name": "checkout", "deployment.environment": "e2e"})


def test_the_sdk_exports_logs_and_spans_and_a_rejected_record_gets_partial_success(
        service: Service) -> None:
    tracer_provider = TracerProvider(resource=RESOURCE)
    span_exporter = RecordingSpanExporter()
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    logger_provider = LoggerProvider(resource=RESOURCE)
    log_exporter = RecordingLogExporter()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    try:
        tracer = tracer_provider.get_tracer("checkout.web", "3.2.1")
        logs = logger_provider.get_logger("checkout.app", "3.2.1")
        with tracer.start_as_current_span("checkout.pay", kind=SpanKind.SERVER, attributes={
                "order.id": 42, "payment.card": "4111 1111 1111 1111"}) as pay:
            # a log line as a logging bridge emits it: a sentence body, fields as attributes; inside
            # the span, so the SDK gives it the span's trace and span ids
            logs.emit(severity_number=SeverityNumber.WARN, severity_text="WARNING",
                      body="card declined for order 42", attributes={"password": "hunter2", "attempt": 3})
            # an event: a name, and a body that is data
            logs.emit(event_name="payment.declined", severity_number=SeverityNumber.ERROR,
                      body="declined", attributes={"api_token": "tok_9fQ2xLr8ZpW4kTn7VbY3", "order.id": 42})
            with tracer.start_as_current_span("db.query") as query:
                query.set_status(Status(StatusCode.ERROR, "lock wait timeout"))
        assert tracer_provider.force_flush(10_000) and logger_provider.force_flush(10_000)
    finally:
        tracer_provider.shutdown()  # the exporters' threads end with the test, pass or fail
        logger_provider.shutdown()
    assert isinstance(pay, ReadableSpan)  # the SDK's span: its times are readable
    assert log_exporter.results == [LogRecordExportResult.SUCCESS]
    assert span_exporter.results == [SpanExportResult.SUCCESS]

    stored = rows(service.url, 4)
    assert set(stored) == {"checkout.pay", "db.query", "otel.log", "payment.declined"}
    trace_id = format(pay.get_span_context().trace_id, "032x")
    pay_id = format(pay.get_span_context().span_id, "016x")
    assert {row.request_id for row in stored.values()} == {trace_id}  # one request, four rows

    span_row, query_row = stored["checkout.pay"], stored["db.query"]
    assert (span_row.severity, query_row.severity) == ("info", "error")
    assert pay.end_time is not None and pay.start_time is not None
    assert span_row.occurred_at == wall(pay.end_time)  # the span's end, in Europe/Paris
    assert span_row.metadata is not None and query_row.metadata is not None
    assert span_row.metadata["attributes"] == {"order.id": 42, "payment.card": "[masked]"}
    assert span_row.metadata["kind"] == "server" and span_row.metadata["span_id"] == pay_id
    assert span_row.metadata["duration_ms"] == (pay.end_time - pay.start_time) / 1e6
    assert span_row.metadata["scope"] == {"name": "checkout.web", "version": "3.2.1"}
    assert span_row.metadata["resource"]["service.name"] == "checkout"
    assert query_row.metadata["parent_span_id"] == pay_id
    assert query_row.metadata["status_message"] == "lock wait timeout"

    logged, event = stored["otel.log"], stored["payment.declined"]
    assert (logged.severity, event.severity) == ("warning", "error")
    assert logged.metadata is not None and event.metadata is not None
    assert logged.metadata["body"] == "card declined for order 42"
    assert logged.metadata["attributes"]["password"] == "[masked]"
    assert logged.metadata["attributes"]["attempt"] == 3
    assert logged.metadata["span_id"] == pay_id and logged.metadata["scope"]["name"] == "checkout.app"
    assert event.metadata["body"] == "declined"
    assert event.metadata["attributes"] == {"api_token": "[masked]", "order.id": 42}
    assert wall(pay.start_time) <= logged.occurred_at <= wall(pay.end_time)
    everything = " ".join(row.metadata_text or "" for row in stored.values())
    for secret in ("hunter2", "4111 1111", "tok_9fQ2"):
        assert secret not in everything

    # A second export, made by the SDK's own encoders, altered to hold one invalid record each.
    headers = {**parse_env_headers(os.environ["OTEL_EXPORTER_OTLP_HEADERS"], liberal=True),
               "Content-Type": "application/x-protobuf"}
    batch = encode_logs(sdk_log_records())
    batch.resource_logs[0].scope_logs[0].log_records[1].trace_id = b"\x01" * 5  # 16 bytes in OTLP
    answer = requests.post(f"{service.endpoint}/v1/logs", data=batch.SerializeToString(),
                           headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/x-protobuf"
    partial = ExportLogsServiceResponse.FromString(answer.content).partial_success
    assert partial.rejected_log_records == 1
    assert "logRecords[1]: trace_id is 5 bytes" in partial.error_message

    spans = encode_spans(sdk_spans())
    spans.resource_spans[0].scope_spans[0].spans[2].name = ""
    answer = requests.post(f"{service.endpoint}/v1/traces", data=spans.SerializeToString(),
                           headers=headers, timeout=10)
    assert answer.status_code == 200
    partial_spans = ExportTraceServiceResponse.FromString(answer.content).partial_success
    assert partial_spans.rejected_spans == 1
    assert "spans[2]: the span has no name" in partial_spans.error_message

    after = rows(service.url, 4 + 2 + 2)
    assert {"batch.log.0", "batch.log.2", "batch.span.0", "batch.span.1"} <= set(after)
    assert {"batch.log.1", "batch.span.2", ""}.isdisjoint(after)
    assert len(after) == 8


def sdk_log_records() -> Sequence[ReadableLogRecord]:
    """Three log records as the SDK holds them before export."""
    memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("checkout.batch")
    for n in range(3):
        logger.emit(event_name=f"batch.log.{n}", severity_number=SeverityNumber.INFO, body=f"n={n}",
                    attributes={"n": n})
    records: Sequence[ReadableLogRecord] = memory.get_finished_logs()
    provider.shutdown()
    return records


def sdk_spans() -> Sequence[ReadableSpan]:
    """Three spans as the SDK holds them before export."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("checkout.batch")
    for n in range(3):
        with tracer.start_as_current_span(f"batch.span.{n}"):
            pass
    spans: Any = memory.get_finished_spans()
    provider.shutdown()
    return list(spans)
