"""The ingest POST answered without Flask's request cycle (``trace_service.http.ingest_route``)
answers as Flask's view does, byte for byte, and stores the same rows; and it steps aside
whenever the app is set up in a way it does not reproduce.

Two apps on two databases, one with the route and one without (``TRACE_INGEST_FAST_ROUTE``),
holding the same keys, are sent the same generated requests in turn; new request ids are drawn
from one seeded sequence for each, so the answers can be compared whole.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
import sqlalchemy as sa
from flask import Flask
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import TestResponse

from tests.conftest import new_mariadb_database
from tests.trace_service.http.test_ingest import URL, Ingest, make_ingest
from tests.trace_service.http.test_ingest_fuzz import requests
from trace_service import context
from trace_service.http import ingest as ingest_module
from trace_service.http.ingest_route import IngestRoute
from trace_service.http.keys import TABLE as KEYS
from trace_service.reader import StoredTrace

SETTINGS = {"ingest_rate": "1000000/minute", "auth_failure_rate": "1000000/minute",
            "ingest_max_bytes": 64_000, "strict": False}


class Pair:
    """Ours with the route (``fast``) and without (``flask``), each on its own database, with
    the same keys; the same request goes to both."""

    def __init__(self, fast_url: str, flask_url: str, **settings: Any) -> None:
        self.fast = make_ingest(fast_url, **{**SETTINGS, **settings})
        self.flask = make_ingest(flask_url, ingest_fast_route=False, **{**SETTINGS, **settings})
        with self.fast.app.extensions["trace_engine"].connect() as conn:
            keys = [row._asdict() for row in conn.execute(sa.select(KEYS))]
        with self.flask.app.extensions["trace_engine"].begin() as conn:
            conn.execute(KEYS.delete())
            conn.execute(KEYS.insert(), keys)
        self.flask.key, self.flask.reports_key = self.fast.key, self.fast.reports_key
        self.passed_to_flask = 0
        route: Any = self.fast.app.wsgi_app
        if isinstance(route, ProxyFix):  # TRACE_TRUSTED_PROXIES: the route sits inside it
            route = route.app
        assert isinstance(route, IngestRoute)
        flask_app = route.wsgi_app

        def counted(environ: dict[str, Any], start_response: Any) -> Any:
            self.passed_to_flask += 1
            return flask_app(environ, start_response)

        route.wsgi_app = counted
        assert not isinstance(self.flask.app.wsgi_app, IngestRoute)

    def post(self, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[TestResponse, TestResponse]:
        """The same request to both apps, each drawing new request ids from the same sequence."""
        answers = []
        for made in (self.fast, self.flask):
            ids = (str(uuid.UUID(int=n, version=4)) for n in itertools.count(1))
            monkeypatch.setattr(context, "new_request_id", ids.__next__)
            answers.append(made.client.post(URL, **kwargs))
        return answers[0], answers[1]

    def rows(self) -> tuple[list[StoredTrace], list[StoredTrace]]:
        return self.fast.stored(), self.flask.stored()

    def close(self) -> None:
        for made in (self.fast, self.flask):
            made.app.extensions["trace_writer"].close(5)
            made.app.extensions["trace_engine"].dispose()


def assert_same(fast: TestResponse, flask_: TestResponse) -> None:
    assert (fast.status, list(fast.headers), fast.get_data()) == \
        (flask_.status, list(flask_.headers), flask_.get_data())


def json_of(response: TestResponse) -> dict[str, Any]:
    body = response.get_json()
    assert isinstance(body, dict)
    return body


def comparable(rows: list[StoredTrace]) -> list[tuple[Any, ...]]:
    """The rows without their ids; the time only where the client gave it (the writer's
    clock is read once for each app)."""
    return [(r.event_key, r.severity, r.actor_admin_id, r.actor_type, r.ip_address, r.user_agent,
             r.route_name, r.request_id, r.metadata_text) for r in rows]


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    folder = tmp_path_factory.mktemp("route")
    made = Pair(f"sqlite:///{folder / 'fast.sqlite3'}", f"sqlite:///{folder / 'flask.sqlite3'}")
    yield made
    made.close()


@pytest.fixture
def mariadb_pair(mariadb_url: str, mariadb_server: sa.Engine) -> Iterator[Pair]:
    with new_mariadb_database(mariadb_server) as other:
        made = Pair(mariadb_url, other)
        yield made
        made.close()


def _post_generated(pair: Pair, monkeypatch: pytest.MonkeyPatch, request_: dict[str, Any]) -> None:
    """Post a generated request to both apps: the same answer, and the same rows after."""
    token = {"good": pair.fast.key, "bad": "tsk_bad", "none": None, "garbage": "\x00\xff"}[
        request_["auth"]]
    headers = dict(request_["headers"])
    if token is not None:
        headers["Authorization"] = f"Bearer {token}" if request_["auth"] != "garbage" else "Basic x"
    passed = pair.passed_to_flask
    fast, flask_ = pair.post(monkeypatch, data=request_["body"], headers=headers)
    assert pair.passed_to_flask == passed  # the route answered it, not Flask
    assert_same(fast, flask_)
    fast_rows, flask_rows = pair.rows()
    assert comparable(fast_rows) == comparable(flask_rows)


# ---------------------------------------------------------------- the same answers, the same rows


# One pair serves every example of a test: both apps see the same sequence of requests.
PAIRED = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                        HealthCheck.too_slow])


@settings(PAIRED, max_examples=400)
@given(request_=requests())
def test_generated_requests_get_the_same_answers_and_rows_on_sqlite(
        pair: Pair, monkeypatch: pytest.MonkeyPatch, request_: dict[str, Any]) -> None:
    _post_generated(pair, monkeypatch, request_)


@settings(PAIRED, max_examples=60)
@given(request_=requests())
def test_generated_requests_get_the_same_answers_and_rows_on_mariadb(
        mariadb_pair: Pair, monkeypatch: pytest.MonkeyPatch, request_: dict[str, Any]) -> None:
    _post_generated(mariadb_pair, monkeypatch, request_)


def test_a_typical_trace_is_stored_alike_with_its_own_time(pair: Pair,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    trace = {"event_key": "auth.login.attempt", "severity": "WARN", "actor_admin_id": 7,
             "occurred_at": "2026-11-24 07:17:13.739142", "event_id": "0b1f5c8e-6d2a-4d3e-9f10-8a7b6c5d4e3f",
             "metadata": {"password": "hunter2", "client": {"version": "4.12.1"}}}
    fast, flask_ = pair.post(monkeypatch, json=trace, headers={
        "Authorization": f"Bearer {pair.fast.key}", "User-Agent": "php-curl/8.2",
        "X-Request-ID": "{3F2504E0-4F89-41D3-9A0C-0305E82C3301}"})
    assert fast.status_code == 202 and json_of(fast)["status"] == "accepted"
    assert_same(fast, flask_)
    fast_rows, flask_rows = pair.rows()
    assert [(r.occurred_at, r.request_id, r.user_agent, r.route_name) for r in fast_rows] == \
        [(r.occurred_at, r.request_id, r.user_agent, r.route_name) for r in flask_rows] == \
        [("2026-11-24 07:17:13.739142", "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "php-curl/8.2", None)]
    assert comparable(fast_rows) == comparable(flask_rows)
    assert "hunter2" not in (fast_rows[0].metadata_text or "")
    again = pair.post(monkeypatch, json=trace, headers={"Authorization": f"Bearer {pair.fast.key}"})
    assert json_of(again[0])["status"] == "duplicate"
    assert_same(*again)


def test_over_the_rate_limit_both_answer_429_with_the_same_retry_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = Pair(f"sqlite:///{tmp_path / 'fast.sqlite3'}", f"sqlite:///{tmp_path / 'flask.sqlite3'}",
                ingest_rate="2/minute")
    try:
        with freeze_time("2026-03-01 10:00:17"):  # the window's reset, hence Retry-After, fixed
            answers = [made.post(monkeypatch, json={"event_key": f"k{n}"},
                                 headers={"Authorization": f"Bearer {made.fast.key}"})
                       for n in range(3)]
        assert [fast.status_code for fast, _ in answers] == [202, 202, 429]
        assert answers[2][0].headers["Retry-After"]
        for fast, flask_ in answers:
            assert_same(fast, flask_)
    finally:
        made.close()


def test_a_body_over_the_limit_is_flasks_413(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps({"event_key": "big", "metadata": {"blob": "x" * 70_000}})
    fast, flask_ = pair.post(monkeypatch, data=body, headers={
        "Authorization": f"Bearer {pair.fast.key}", "Content-Type": "application/json"})
    assert fast.status_code == 413 and json_of(fast)["request_id"] == fast.headers["X-Request-ID"]
    assert_same(fast, flask_)


def test_an_unexpected_error_is_the_apps_logged_500(pair: Pair, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest_module, "decode_body", broken)
    with caplog.at_level(logging.ERROR, logger="trace_service.http.app"):
        fast, flask_ = pair.post(monkeypatch, json={"event_key": "x"},
                                 headers={"Authorization": f"Bearer {pair.fast.key}"})
    assert fast.status_code == 500 and json_of(fast)["error"] == "unexpected error; it was logged"
    assert_same(fast, flask_)
    assert [r.message for r in caplog.records].count("unhandled error") == 2


def test_the_client_address_is_proxy_fixs_behind_a_trusted_proxy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = Pair(f"sqlite:///{tmp_path / 'fast.sqlite3'}", f"sqlite:///{tmp_path / 'flask.sqlite3'}",
                trusted_proxies=1)
    try:
        answers = made.post(monkeypatch, json={"event_key": "proxied"}, headers={
            "Authorization": f"Bearer {made.fast.key}", "X-Forwarded-For": "203.0.113.9"})
        assert_same(*answers)
        fast_rows, flask_rows = made.rows()
        assert [r.ip_address for r in fast_rows] == [r.ip_address for r in flask_rows] == ["203.0.113.9"]
    finally:
        made.close()


# ---------------------------------------------------------------- when the route steps aside


def test_other_requests_go_to_flask(pair: Pair) -> None:
    assert pair.fast.client.get(URL, headers={"Authorization": f"Bearer {pair.fast.key}"}).status_code == 403
    assert pair.fast.client.post(URL + "/", json={}).status_code in (308, 404, 405)
    assert pair.fast.client.get("/healthz").status_code == 200
    assert pair.passed_to_flask == 3


def _flask_answers_the_post(pair: Pair) -> bool:
    passed = pair.passed_to_flask
    response = pair.fast.post({"event_key": "aside"})
    assert response.status_code == 202
    return pair.passed_to_flask == passed + 1


def test_the_route_answers_the_post_itself(pair: Pair) -> None:
    assert not _flask_answers_the_post(pair)


def test_a_hook_added_after_the_app_was_built_sends_the_post_to_flask(pair: Pair) -> None:
    seen = []
    pair.fast.app.before_request_funcs.setdefault("ingest", []).append(lambda: seen.append(1))
    assert _flask_answers_the_post(pair) and seen == [1]


def test_a_signal_receiver_sends_the_post_to_flask(pair: Pair) -> None:
    seen: list[Flask] = []

    def receiver(sender: Flask, **_extra: Any) -> None:
        seen.append(sender)

    flask.request_started.connect(receiver, pair.fast.app)
    try:
        assert _flask_answers_the_post(pair) and seen == [pair.fast.app]
    finally:
        flask.request_started.disconnect(receiver, pair.fast.app)
    assert not _flask_answers_the_post(pair)


class _Request(flask.Request):
    max_content_length = 10  # a deployment's own limit, which Flask's cycle would apply


class _Response(flask.Response):
    pass


@pytest.mark.parametrize("setup", ["debug", "server_name", "trusted_hosts", "view", "secret_key",
                                   "session_interface", "request_class", "response_class",
                                   "appcontext_teardown", "patched_cycle", "overridden_cycle"])
def test_settings_the_route_does_not_reproduce_send_the_post_to_flask(
        pair: Pair, setup: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = pair.fast.app
    calls: list[str] = []
    if setup == "debug":
        app.debug = True
    elif setup == "server_name":
        app.config["SERVER_NAME"] = "localhost"
    elif setup == "trusted_hosts":
        app.config["TRUSTED_HOSTS"] = ["localhost"]
    elif setup == "view":
        view = app.view_functions["ingest.post_traces"]

        def wrapped() -> Any:  # as a decorator a deployment adds would
            calls.append("view")
            return view()

        app.view_functions["ingest.post_traces"] = wrapped
    elif setup == "secret_key":  # sessions: Flask's cycle may refresh the cookie
        app.secret_key = "s3cret"
    elif setup == "session_interface":
        app.session_interface = type("Sessions", (flask.sessions.SecureCookieSessionInterface,), {})()
    elif setup == "request_class":
        app.request_class = _Request
        response = pair.fast.post({"event_key": "over the request class's own limit"})
        assert response.status_code == 413  # as Flask answers it
        return
    elif setup == "response_class":
        app.response_class = _Response
    elif setup == "appcontext_teardown":
        app.teardown_appcontext(lambda _exc: calls.append("teardown"))
    else:  # an APM agent patching Flask's class, or an app class overriding a method
        original = Flask.full_dispatch_request

        def traced(self: Flask) -> Any:
            calls.append("dispatch")
            return original(self)

        if setup == "patched_cycle":
            monkeypatch.setattr(Flask, "full_dispatch_request", traced)
        else:
            monkeypatch.setattr(app, "__class__", type("App", (Flask,), {"full_dispatch_request": traced}))
    assert _flask_answers_the_post(pair)
    expected = {"view": ["view"], "appcontext_teardown": ["teardown"], "patched_cycle": ["dispatch"],
                "overridden_cycle": ["dispatch"]}.get(setup, [])
    assert calls == expected


def test_an_upgrade_header_is_left_to_flask(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    passed = pair.passed_to_flask
    fast, flask_ = pair.post(monkeypatch, json={"event_key": "ws"}, headers={
        "Authorization": f"Bearer {pair.fast.key}", "Connection": "Upgrade", "Upgrade": "websocket"})
    assert pair.passed_to_flask == passed + 1
    assert fast.status_code == 405  # Werkzeug routes it as a WebSocket, which no rule takes
    assert_same(fast, flask_)
    assert pair.rows() == ([], [])


def test_once_the_route_has_answered_late_setup_raises_as_after_flask(pair: Pair) -> None:
    assert pair.fast.post({"event_key": "first"}).status_code == 202
    with pytest.raises(AssertionError, match="can no longer be called"):
        pair.fast.app.before_request(lambda: None)


def test_the_setting_turns_the_route_off(tmp_path: Path) -> None:
    made: Ingest = make_ingest(f"sqlite:///{tmp_path / 't.sqlite3'}", ingest_fast_route=False)
    try:
        assert not isinstance(made.app.wsgi_app, IngestRoute)
        assert made.post({"event_key": "off"}).status_code == 202
    finally:
        made.app.extensions["trace_writer"].close(5)
