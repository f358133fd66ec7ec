"""GET /api/telemetry/traces[/<id>]: the lookup behind a traces:read key, on MariaDB and SQLite,
layouts A and B, beside ingest's POST on the same path."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.trace_service.http.test_ingest import URL, make_ingest_on_layout
from tests.trace_service.test_lookup import BASE, Row, Table
from trace_service.db import forget_layout
from trace_service.lookup import MAX_ID


@dataclass
class Api:
    app: Flask
    client: FlaskClient
    keys: dict[str, str]  # by role: ingest, reports, traces, admin
    table: Table

    def get(self, path: str = URL, key: str | None = "traces", **params: Any) -> Any:
        headers = {} if key is None else {"Authorization": f"Bearer {self.keys[key]}"}
        return self.client.get(path, headers=headers, query_string=params)


@pytest.fixture(params=["A", "B"])
def api(request: pytest.FixtureRequest, database_url: str) -> Iterator[Api]:
    """The app on each backend, over our layout A or PHP's layout B (adopted by the migration)."""
    made = make_ingest_on_layout(database_url, request.param)
    store = made.app.extensions["trace_keys"]
    keys = {"ingest": made.key, "reports": made.reports_key,
            "traces": store.create("operator", ["traces:read"])[1],
            "admin": store.create("root", ["admin"])[1]}
    engine = made.app.extensions["trace_engine"]
    yield Api(made.app, made.client, keys, Table(engine, request.param))
    made.app.extensions["trace_writer"].close(2)
    engine.dispose()


def _ids(body: dict[str, Any]) -> list[int]:
    return [item["id"] for item in body["items"]]


# ---------------------------------------------------------------- who may look


@pytest.mark.parametrize("path", [URL, f"{URL}/1"])
def test_only_keys_with_traces_read_may_look(api: Api, path: str) -> None:
    api.table.insert([Row("auth.login")])
    assert api.get(path, key=None).status_code == 401
    for role in ("ingest", "reports"):
        refused = api.get(path, key=role)
        assert refused.status_code == 403, role
        assert "has no 'traces:read' scope" in refused.json["error"]
        assert refused.json["request_id"]
    assert api.get(path, key="traces").status_code == 200
    assert api.get(path, key="admin").status_code == 200  # admin carries every scope


def test_the_post_on_the_same_path_is_still_ingest(api: Api) -> None:
    posted: Any = api.client.post(URL, json=[
        {"event_key": "auth.login.attempt", "request_id": "req-x", "actor_admin_id": 7,
         "metadata": {"password": "hunter2", "target_id": 3}},
        {"event_key": "auth.login.success", "request_id": "req-x", "actor_admin_id": 7},
        {"event_key": "auth.logout", "request_id": "req-y"},
    ], headers={"Authorization": f"Bearer {api.keys['ingest']}"})
    assert posted.status_code == 202 and posted.json["accepted"] == 3
    assert api.app.extensions["trace_writer"].flush(10)
    # An ingest-only key cannot read back what it posted.
    assert api.get(key="ingest", request_id="req-x").status_code == 403
    body = api.get(request_id="req-x").json
    assert [i["event_key"] for i in body["items"]] == ["auth.login.success", "auth.login.attempt"]
    assert body["next_before_id"] is None
    first = body["items"][1]
    assert first["actor_admin_id"] == 7
    assert first["actor_type"] == ("admin" if api.table.layout == "B" else None)
    assert first["metadata"]["password"] == "[masked]" and first["metadata"]["target_id"] == 3
    assert "hunter2" not in first["metadata_text"]


def test_405_names_every_method_of_the_path(api: Api) -> None:
    response = api.client.put(URL)
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST", "OPTIONS"}


# ---------------------------------------------------------------- what it finds


def test_filters_and_the_json_shape(api: Api) -> None:
    ids = api.table.insert([
        Row("billing.100%_paid", "req-1", actor=4, minute=0, metadata='{"n":1}'),
        Row("billing.100x_paid", "req-1", actor=4, minute=5),
        Row("auth.login", "req-2", actor=9, minute=10),
    ])
    body = api.get().json
    assert set(body) == {"items", "next_before_id"} and _ids(body) == ids[::-1]
    assert set(body["items"][0]) == {
        "id", "occurred_at", "severity", "event_key", "actor_admin_id", "actor_type", "request_id",
        "route_name", "ip_address", "user_agent", "metadata", "metadata_text"}
    assert _ids(api.get(event_key="billing.100%_*").json) == [ids[0]]  # % and _ are literal
    assert _ids(api.get(event_key="billing.100?_paid").json) == [ids[1], ids[0]]
    assert _ids(api.get(actor_id=9).json) == [ids[2]]
    five = BASE + timedelta(minutes=5)
    assert _ids(api.get(request_id="req-1", since=f"{five:%Y-%m-%dT%H:%M}").json) == [ids[1]]
    assert _ids(api.get(until=f"{five:%Y-%m-%d %H:%M:%S}").json) == [ids[0]]
    assert _ids(api.get(since=f"{BASE + timedelta(days=1):%Y-%m-%d}").json) == []


def test_pages_follow_next_before_id_to_every_row_once(api: Api) -> None:
    ids = api.table.insert([Row(f"k.{i % 3}", minute=i) for i in range(12)])
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 5}
    while True:
        body = api.get(**params).json
        assert len(body["items"]) <= 5
        seen += _ids(body)
        if body["next_before_id"] is None:
            break
        params["before_id"] = body["next_before_id"]
    assert seen == ids[::-1]


def test_one_trace_by_id(api: Api) -> None:
    (stored,) = api.table.insert([Row("auth.login", "req-1", actor=2, metadata='{"a":[1,2]}')])
    shown = api.get(f"{URL}/{stored}")
    assert shown.status_code == 200 and shown.json == api.get().json["items"][0]
    missing = api.get(f"{URL}/{stored + 1}")
    assert missing.status_code == 404 and f"no trace {stored + 1}" in missing.json["error"]


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(("params", "words"), [
    ({"limit": "0"}, "limit='0' is not a page size: use a whole number from 1 to 1000"),
    ({"limit": "abc"}, "limit='abc' is not a page size"),
    ({"before_id": "-3"}, "before_id='-3' is not a trace id: use the next_before_id"),
    ({"actor_id": "seven"}, "actor_id='seven' is not an actor id"),
    ({"since": "2026-02-30"}, "since='2026-02-30' is not a date or time: use YYYY-MM-DD or"),
    ({"until": "2026-11-16T09:00+02:00"}, "until='2026-11-16T09:00+02:00' has a zone"),
    ({"request_id": ""}, "request_id='' is empty"),
    ({"event_key": "k" * 300}, "is longer than 255 characters"),
    ({"requestid": "abc"}, "requestid='abc' is not a parameter of this lookup: use request_id, "),
    ({"limit": ["5", "6"]}, "limit is given 2 times: give it once"),
])
def test_bad_parameters_get_400_naming_them(api: Api, params: dict[str, Any], words: str) -> None:
    response = api.get(**params)
    assert response.status_code == 400
    assert response.json["status"] == 400 and response.json["request_id"]
    assert words in response.json["error"], response.json["error"]


@pytest.mark.parametrize(("trace_id", "words"), [
    ("abc", "id='abc' is not a trace id: use an id that GET /api/telemetry/traces lists"),
    ("0", "id='0' is not a trace id"),
    (str(MAX_ID + 1), "is not a trace id"),
])
def test_a_bad_id_gets_400(api: Api, trace_id: str, words: str) -> None:
    response = api.get(f"{URL}/{trace_id}")
    assert response.status_code == 400 and words in response.json["error"]


def test_a_database_that_cannot_answer_gets_503_not_500(api: Api) -> None:
    api.table.insert([Row("k")])
    assert api.get().status_code == 200
    with api.table.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE telemetry_traces"))
    gone = api.get()
    assert gone.status_code == 503 and "Retry-After" in gone.headers
    assert "did not answer" in gone.json["error"]
    forget_layout(api.table.engine)  # as after a restart: the table's layout is looked up again
    unknown = api.get(f"{URL}/1")
    assert unknown.status_code == 503 and "flask db upgrade" in unknown.json["error"]
