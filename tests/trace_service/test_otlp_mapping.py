"""OTLP log records and spans as traces (``trace_service.otlp_mapping``, pure), and the OTLP JSON
decoding that feeds it the same records as protobuf does (``trace_service.http.otlp_codec``)."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from governance.errors import TraceInputError
from trace_service.http.otlp_codec import LOGS, TRACES, decode
from trace_service.otlp_mapping import (
    DEFAULT_LOG_KEY,
    any_value,
    log_event_id,
    log_severity,
    map_log,
    map_span,
    span_event_id,
)
from trace_service.php_json import encode_metadata

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")
PARENT_ID = bytes.fromhex("eee19b7ec3c1b173")
NOW_NS = 1_800_000_000_000_000_000
T0 = 1_764_000_000_123_456_789      # 2025-11-24 16:00:00.123456789 UTC
RESOURCE = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="billing"))])
SCOPE = InstrumentationScope(name="billing.payments", version="2.1.0")


def value(python: Any) -> AnyValue:
    """The AnyValue an SDK makes of a Python value (bytes as bytes_value)."""
    if isinstance(python, bool):
        return AnyValue(bool_value=python)
    if isinstance(python, int):
        return AnyValue(int_value=python)
    if isinstance(python, float):
        return AnyValue(double_value=python)
    if isinstance(python, str):
        return AnyValue(string_value=python)
    if isinstance(python, bytes):
        return AnyValue(bytes_value=python)
    if isinstance(python, list):
        return AnyValue(array_value=ArrayValue(values=[value(item) for item in python]))
    if isinstance(python, dict):
        return AnyValue(kvlist_value=KeyValueList(values=pairs(python)))
    raise TypeError(python)


def pairs(python: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=value(item)) for key, item in python.items()]


def log(**fields: Any) -> LogRecord:
    attributes = fields.pop("attributes", None)
    body = fields.pop("body", None)
    record = LogRecord(**fields)
    if attributes is not None:
        record.attributes.extend(pairs(attributes))
    if body is not None:
        record.body.CopyFrom(value(body))
    return record


def span(**fields: Any) -> Span:
    attributes = fields.pop("attributes", None)
    defaults: dict[str, Any] = {"name": "checkout.pay", "trace_id": TRACE_ID, "span_id": SPAN_ID,
                                "start_time_unix_nano": T0, "end_time_unix_nano": T0 + 1_500_000}
    made = Span(**{**defaults, **fields})
    if attributes is not None:
        made.attributes.extend(pairs(attributes))
    return made


# ---------------------------------------------------------------- AnyValue


def test_every_kind_of_any_value_becomes_plain_json_data() -> None:
    converted = any_value(value({"s": "a", "b": True, "i": -(2**63), "d": 2.5, "l": [1, "x", [2.5]],
                                 "kv": {"inner": {"deep": 1}}, "raw": b"\x00\xffhi"}))
    assert converted == {"s": "a", "b": True, "i": -(2**63), "d": 2.5, "l": [1, "x", [2.5]],
                         "kv": {"inner": {"deep": 1}}, "raw": base64.b64encode(b"\x00\xffhi").decode()}
    assert any_value(AnyValue()) is None


def test_a_repeated_key_keeps_its_last_value() -> None:
    repeated = AnyValue(kvlist_value=KeyValueList(values=[
        KeyValue(key="k", value=AnyValue(int_value=1)), KeyValue(key="k", value=AnyValue(int_value=2))]))
    assert any_value(repeated) == {"k": 2}


_SCALARS = (st.text(max_size=20) | st.booleans() | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_any_valid_any_value_round_trips_into_json_metadata(python: Any) -> None:
    converted = any_value(value(python))
    assert converted == python
    assert json.loads(json.dumps(converted, allow_nan=False)) == python  # plain JSON, nothing lost
    stored = encode_metadata({"attributes": {"v": converted}})  # as the writer stores it
    assert stored is not None and "v" in json.loads(stored)["attributes"]


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_bytes_become_base64_text(raw: bytes) -> None:
    assert base64.b64decode(any_value(AnyValue(bytes_value=raw))) == raw


# ---------------------------------------------------------------- log records


@pytest.mark.parametrize(("number", "severity"), [
    (1, "debug"), (4, "debug"), (5, "debug"), (8, "debug"), (9, "info"), (12, "info"), (13, "warning"),
    (16, "warning"), (17, "error"), (20, "error"), (21, "critical"), (24, "critical")])
def test_severity_numbers_map_by_band(number: int, severity: str) -> None:
    assert log_severity(number, "") == severity


@pytest.mark.parametrize(("text", "severity"), [
    ("WARN", "warning"), ("Error", "error"), ("fatal", "critical"), ("trace", "debug"),
    ("loud", "info"), ("", "info")])
def test_without_a_number_the_text_is_used_when_it_is_a_level_name(text: str, severity: str) -> None:
    assert log_severity(0, text) == severity
    assert log_severity(99, text) == severity  # a number outside the enum counts as unset


def test_a_log_record_maps_to_every_field() -> None:
    record = log(time_unix_nano=T0, severity_number=17, body="payment declined for order 7",
                 event_name="payment.declined", trace_id=TRACE_ID, span_id=SPAN_ID,
                 attributes={"order_id": 7, "password": "hunter2"})
    mapped = map_log(record, RESOURCE, SCOPE, NOW_NS)
    assert (mapped.event_key, mapped.severity, mapped.request_id) == (
        "payment.declined", "error", "5b8efff798038103d269b633813fc60c")
    assert mapped.occurred_at == datetime(2025, 11, 24, 16, 0, 0, 123456, tzinfo=UTC)
    assert mapped.metadata == {
        "attributes": {"order_id": 7, "password": "hunter2"},  # masked by the writer, not here
        "body": "payment declined for order 7", "span_id": "eee19b7ec3c1b174",
        "resource": {"service.name": "billing"},
        "scope": {"name": "billing.payments", "version": "2.1.0"}}


def test_the_event_key_is_the_event_name_then_the_attribute_then_a_key_like_body() -> None:
    def key(record: LogRecord) -> tuple[str, Any]:
        mapped = map_log(record, Resource(), InstrumentationScope(), NOW_NS)
        return mapped.event_key, mapped.metadata.get("body")

    assert key(log(event_name="a.b", body="x.y")) == ("a.b", "x.y")
    assert key(log(attributes={"event.name": "from.attr"}, body="x.y")) == ("from.attr", "x.y")
    assert key(log(body="auth.login:failed-2")) == ("auth.login:failed-2", None)
    assert key(log(body="user 7 logged in")) == (DEFAULT_LOG_KEY, "user 7 logged in")
    assert key(log(body="x" * 256)) == (DEFAULT_LOG_KEY, "x" * 256)
    assert key(log(body={"msg": "structured"})) == (DEFAULT_LOG_KEY, {"msg": "structured"})
    assert key(log(attributes={"event.name": 5}, body="k")) == ("k", None)  # not a name: ignored
    assert key(log()) == (DEFAULT_LOG_KEY, None)


def test_the_time_is_the_record_s_else_the_observed_else_now() -> None:
    def when(record: LogRecord) -> datetime:
        return map_log(record, Resource(), InstrumentationScope(), NOW_NS).occurred_at

    assert when(log(time_unix_nano=T0, observed_time_unix_nano=T0 + 10**9)).second == 0
    assert when(log(observed_time_unix_nano=T0 + 10**9)).second == 1
    assert when(log()) == datetime.fromtimestamp(NOW_NS / 1e9, UTC)
    assert when(log(time_unix_nano=T0)).tzinfo is UTC  # aware: the writer converts to the table's zone


def test_an_all_zero_trace_id_means_no_trace() -> None:
    mapped = map_log(log(trace_id=bytes(16), span_id=bytes(8)), Resource(), InstrumentationScope(), 0)
    assert mapped.request_id is None and "span_id" not in mapped.metadata


@pytest.mark.parametrize(("record", "reason"), [
    (log(trace_id=b"\x01" * 5), "trace_id is 5 bytes: it must be 16"),
    (log(span_id=b"\x01" * 9), "span_id is 9 bytes: it must be 8"),
    (log(event_name="k" * 256), "event_name is 256 characters"),
    (log(event_name="a\nb"), "control characters"),
    (log(attributes={"event.name": "x" * 300}), "event.name attribute is 300 characters"),
])
def test_a_log_record_that_cannot_be_a_trace_is_rejected_with_the_reason(record: LogRecord,
                                                                         reason: str) -> None:
    with pytest.raises(TraceInputError, match=reason):
        map_log(record, Resource(), InstrumentationScope(), NOW_NS)


# ---------------------------------------------------------------- spans


def test_a_span_maps_to_a_trace_at_its_end() -> None:
    made = span(kind=Span.SPAN_KIND_SERVER, parent_span_id=PARENT_ID, attributes={"http.route": "/pay"},
                status=Status(code=Status.STATUS_CODE_ERROR, message="card declined"))
    mapped = map_span(made, RESOURCE, SCOPE, NOW_NS)
    assert (mapped.event_key, mapped.severity, mapped.request_id) == (
        "checkout.pay", "error", TRACE_ID.hex())
    assert mapped.occurred_at == datetime(2025, 11, 24, 16, 0, 0, 124956, tzinfo=UTC)  # the end
    assert mapped.metadata == {
        "attributes": {"http.route": "/pay"}, "duration_ms": 1.5, "kind": "server",
        "span_id": SPAN_ID.hex(), "parent_span_id": PARENT_ID.hex(), "status_message": "card declined",
        "resource": {"service.name": "billing"},
        "scope": {"name": "billing.payments", "version": "2.1.0"}}


@pytest.mark.parametrize("code", [Status.STATUS_CODE_UNSET, Status.STATUS_CODE_OK])
def test_a_span_that_did_not_fail_is_info(code: int) -> None:
    mapped = map_span(span(status=Status(code=code)), Resource(), InstrumentationScope(), NOW_NS)  # type: ignore[arg-type]
    assert mapped.severity == "info" and mapped.metadata["kind"] == "unspecified"


def test_a_span_without_times_is_stored_now_without_a_duration() -> None:
    mapped = map_span(span(start_time_unix_nano=0, end_time_unix_nano=0), Resource(),
                      InstrumentationScope(), NOW_NS)
    assert mapped.occurred_at == datetime.fromtimestamp(NOW_NS / 1e9, UTC)
    assert "duration_ms" not in mapped.metadata


@pytest.mark.parametrize(("made", "reason"), [
    (span(name=""), "no name"),
    (span(name="n" * 256), "256 characters"),
    (span(trace_id=b""), "trace_id is missing"),
    (span(trace_id=b"\x01" * 5), "trace_id is 5 bytes"),
    (span(trace_id=bytes(16)), "trace_id is all zeros"),
    (span(span_id=b""), "span_id is missing"),
    (span(parent_span_id=b"\x01" * 3), "parent_span_id is 3 bytes"),
    (span(start_time_unix_nano=T0 + 1, end_time_unix_nano=T0), "before start"),
])
def test_a_span_that_cannot_be_a_trace_is_rejected_with_the_reason(made: Span, reason: str) -> None:
    with pytest.raises(TraceInputError, match=reason):
        map_span(made, Resource(), InstrumentationScope(), NOW_NS)


# ---------------------------------------------------------------- ids


def test_a_span_s_event_id_is_its_trace_and_span_id_and_nothing_else() -> None:
    first = map_span(span(), RESOURCE, SCOPE, NOW_NS).event_id
    again = map_span(span(name="renamed", attributes={"x": 1}), Resource(), SCOPE, 0).event_id
    other = map_span(span(span_id=PARENT_ID), RESOURCE, SCOPE, NOW_NS).event_id
    assert first == again == span_event_id(TRACE_ID.hex(), SPAN_ID.hex()) != other


_LOGS = st.builds(
    lambda t, body, attrs, number: log(time_unix_nano=t, body=body, attributes=attrs,
                                       severity_number=number),
    st.integers(0, 2**63), st.text(max_size=30), st.dictionaries(st.text(max_size=5), _SCALARS, max_size=3),
    st.integers(0, 24))


@settings(max_examples=150, deadline=None)
@given(_LOGS)
def test_a_log_record_s_event_id_is_deterministic(record: LogRecord) -> None:
    first = map_log(record, RESOURCE, SCOPE, NOW_NS).event_id
    reparsed = LogRecord.FromString(record.SerializeToString())
    assert map_log(reparsed, RESOURCE, SCOPE, NOW_NS + 1).event_id == first  # not the time of receipt
    assert log_event_id(record, RESOURCE, SCOPE) == first
    changed = LogRecord()
    changed.CopyFrom(record)
    changed.observed_time_unix_nano += 1
    assert log_event_id(changed, RESOURCE, SCOPE) != first
    assert log_event_id(record, Resource(), SCOPE) != first  # another service's same record


@settings(max_examples=100, deadline=None)
@given(_LOGS, st.booleans())
def test_json_and_protobuf_give_the_same_records_and_ids(record: LogRecord, with_ids: bool) -> None:
    if with_ids:
        record.trace_id, record.span_id = TRACE_ID, SPAN_ID
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=RESOURCE, scope_logs=[ScopeLogs(scope=SCOPE, log_records=[record])])])
    from_protobuf = decode(LOGS, request.SerializeToString(), "protobuf")
    from_json = decode(LOGS, json.dumps(otlp_json(request)).encode(), "json")
    assert [u.record for u in from_json] == [u.record for u in from_protobuf] == [record]
    assert [map_log(u.record, u.resource, u.scope, 0).event_id for u in from_json] == [
        map_log(u.record, u.resource, u.scope, 0).event_id for u in from_protobuf]


def otlp_json(message: Any) -> Any:
    """``message`` as OTLP JSON: protobuf's JSON mapping with hex ids and integer enums (what an
    OTLP/JSON exporter sends)."""
    def hexed(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: (base64.b64decode(item).hex() if key in ("traceId", "spanId", "parentSpanId")
                          else hexed(item)) for key, item in node.items()}
        if isinstance(node, list):
            return [hexed(item) for item in node]
        return node
    return hexed(json_format.MessageToDict(message, use_integers_for_enums=True))


def test_otlp_json_ids_are_hex_in_either_case_and_links_too() -> None:
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "name": "a", "traceId": TRACE_ID.hex().upper(), "spanId": SPAN_ID.hex(), "kind": 2,
        "startTimeUnixNano": str(T0), "endTimeUnixNano": T0 + 1_000_000,
        "links": [{"traceId": TRACE_ID.hex(), "spanId": PARENT_ID.hex()}]}]}]}]}
    (unit,) = decode(TRACES, json.dumps(body).encode(), "json")
    assert unit.error is None
    assert (unit.record.trace_id, unit.record.links[0].span_id) == (TRACE_ID, PARENT_ID)
    assert unit.record.kind == Span.SPAN_KIND_SERVER and unit.record.end_time_unix_nano == T0 + 1_000_000


def test_a_json_record_protobuf_s_mapping_refuses_is_rejected_alone() -> None:
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"body": {"stringValue": "ok"}},
        {"traceId": "AAECAwQFBgcICQoLDA0ODw=="},                   # base64: not OTLP JSON
        {"timeUnixNano": "soon"},
        {"body": {"stringValue": "a", "intValue": "1"}}]}]}]}
    units = decode(LOGS, json.dumps(body).encode(), "json")
    assert [u.error is None for u in units] == [True, False, False, False]
    assert "traceId must be a hex string" in (units[1].error or "")
    assert "timeUnixNano" in (units[2].error or "")


def test_a_spans_request_s_empty_message_has_no_records() -> None:
    assert decode(TRACES, ExportTraceServiceRequest().SerializeToString(), "protobuf") == []
    assert decode(TRACES, b"{}", "json") == []
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans()])])
    assert decode(TRACES, request.SerializeToString(), "protobuf") == []


def test_nan_in_a_double_attribute_is_stored_as_null() -> None:
    mapped = map_log(log(attributes={"ratio": math.nan}), Resource(), InstrumentationScope(), 0)
    assert encode_metadata(mapped.metadata) == '{"attributes":{"ratio":null}}'
