"""2,000+ generated requests against the ingest endpoint: never a 500, always a documented answer.

Bodies are random bytes, random JSON, random PHP forms and near-valid traces; content types,
encodings, keys and request ids vary too. Every answer must be a status the OpenAPI document
lists, in JSON, with the request id echoed.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.trace_service.http.test_ingest import URL, Ingest, make_ingest
from trace_service.http.openapi import DOCUMENT

DOCUMENTED = {int(code) for code in DOCUMENT["paths"][URL]["post"]["responses"]}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                      max_size=4),
    max_leaves=15,
)
fields = {
    "event_key": st.text(max_size=300) | st.integers() | st.none(),
    "severity": st.sampled_from(["info", "WARN", "x" * 30, "", "critical"]) | st.integers() | json_values,
    "actor_admin_id": st.integers() | st.text(max_size=12) | st.none() | st.floats(allow_nan=False),
    "metadata": json_values | st.text(max_size=50),
    "occurred_at": st.sampled_from(["2026-11-24 07:17:13.739142", "2026-11-24T05:17:13Z", "yesterday",
                                    "9999-99-99"]) | json_values,
    "event_id": st.uuids().map(str) | st.text(max_size=40),
    "ip_address": st.sampled_from(["10.0.0.1", "::1", "999.0.0.1", ""]) | json_values,
    "request_id": st.text(max_size=80),
    "route_name": st.text(max_size=300),
    "unexpected": json_values,
}
traces = st.fixed_dictionaries({}, optional=fields)
json_bodies = (traces | st.lists(traces, max_size=6) | json_values).map(
    lambda value: json.dumps(value).encode())
form_bodies = st.dictionaries(
    st.text(alphabet="abcdefgh_[]", min_size=1, max_size=12), st.text(max_size=20), max_size=6,
).map(lambda d: urlencode(d).encode())
bodies = json_bodies | form_bodies | st.binary(max_size=300)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(bodies)
    headers: dict[str, str] = {}
    content_type = draw(st.sampled_from([
        "application/json", "application/x-www-form-urlencoded", "text/plain",
        "application/json; charset=latin1", None,
    ]))
    if content_type:
        headers["Content-Type"] = content_type
    if draw(st.booleans()) and draw(st.booleans()):
        encoding = draw(st.sampled_from(["gzip", "br", "identity"]))
        headers["Content-Encoding"] = encoding
        if encoding == "gzip" and draw(st.booleans()):
            body = gzip.compress(body)
    auth = draw(st.sampled_from(["good", "good", "good", "bad", "none", "garbage"]))
    request_id = draw(st.sampled_from([None, "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "nope"]))
    if request_id:
        headers["X-Request-ID"] = request_id
    return {"body": body, "headers": headers, "auth": auth}


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'traces.sqlite3'}"
    made = make_ingest(url, ingest_rate="1000000/minute", auth_failure_rate="1000000/minute",
                       ingest_max_bytes=64_000, strict=False)
    yield made
    made.app.extensions["trace_writer"].close(5)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(request_=requests())
def test_no_generated_request_gets_a_500(fuzz_target: Ingest, request_: dict[str, Any]) -> None:
    token = {"good": fuzz_target.key, "bad": "tsk_bad", "none": None, "garbage": "\x00\xff"}[
        request_["auth"]]
    headers = dict(request_["headers"])
    if token is not None:
        headers["Authorization"] = f"Bearer {token}" if request_["auth"] != "garbage" else "Basic x"
    response = fuzz_target.client.post(URL, data=request_["body"], headers=headers)
    assert response.status_code in DOCUMENTED, (response.status_code, response.data[:300])
    assert response.is_json and response.json is not None
    assert response.headers["X-Request-ID"]
    assert response.json.get("request_id") == response.headers["X-Request-ID"]
