"""X-Request-ID exactly as the PHP middleware takes it, and the contextvars around it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask, abort
from hypothesis import given
from hypothesis import strategies as st

from trace_service import context
from trace_service.flask_ext import RequestContext

V4 = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
V4_RENDERINGS = [
    V4,
    V4.upper(),
    "{" + V4 + "}",
    "urn:uuid:" + V4,
    V4.replace("-", ""),
    "{" + V4.upper().replace("-", "") + "}",
]
REPLACED = [
    " " + V4,
    V4 + "\n",
    "6fa459ea-ee8a-3ca4-894e-db77e160355e",  # version 3
    "3f2504e0-4f89-11d3-9a0c-0305e82c3301",  # version 1
    "3f2504e0-4f89-41d3-ca0c-0305e82c3301",  # variant bits 110 (Microsoft), not RFC 4122
    "3f2504e0-4f89-41d3-7a0c-0305e82c3301",  # variant bits 0 (NCS)
    "{" + V4,
    V4 + "}",
    "3f2504e0-4f8941d3-9a0c-0305e82c3301",  # hyphens neither all nor none
    "not-a-uuid",
    "",
    "g" * 32,
    "00000000-0000-0000-0000-000000000000",
]


@pytest.mark.parametrize("header", V4_RENDERINGS)
def test_v4_in_any_accepted_form_is_kept_lower_case(header: str) -> None:
    assert context.accept_request_id(header) == V4


@pytest.mark.parametrize("header", REPLACED)
def test_anything_else_is_refused(header: str) -> None:
    assert context.accept_request_id(header) is None


@given(st.uuids(version=4), st.sampled_from(["plain", "upper", "braces", "urn", "hex"]))
def test_every_v4_rendering_normalises_to_the_canonical_form(value: uuid.UUID, form: str) -> None:
    canonical = str(value)
    header = {
        "plain": canonical, "upper": canonical.upper(), "braces": "{" + canonical + "}",
        "urn": value.urn, "hex": value.hex,
    }[form]
    assert context.accept_request_id(header) == canonical


@given(st.uuids().filter(lambda u: u.version != 4))
def test_other_versions_are_replaced(value: uuid.UUID) -> None:
    assert context.accept_request_id(str(value)) is None


@given(st.text(max_size=80))
def test_any_text_yields_none_or_a_canonical_v4(header: str) -> None:
    accepted = context.accept_request_id(header)
    if accepted is not None:
        parsed = uuid.UUID(accepted)
        assert str(parsed) == accepted and parsed.version == 4


def test_new_ids_are_v4_and_accepted() -> None:
    new = context.request_id_from_header("garbage")
    assert uuid.UUID(new).version == 4 and context.accept_request_id(new) == new


def test_trace_context_binds_and_restores() -> None:
    assert context.current() == context.EMPTY
    with context.trace_context(V4.upper(), route_name="jobs.prune") as info:
        assert info.request_id == V4 and context.current().route_name == "jobs.prune"
        with context.trace_context() as inner:
            assert inner.request_id != V4
        assert context.current() is info
    assert context.current() == context.EMPTY


def test_log_filter_adds_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.request_id")
    log.addFilter(context.RequestIdFilter())
    try:
        with caplog.at_level(logging.INFO, logger="test.request_id"):
            log.info("outside")
            with context.trace_context(V4):
                log.info("inside")
    finally:
        log.filters.clear()
    assert [r.request_id for r in caplog.records] == ["-", V4]  # type: ignore[attr-defined]


@pytest.fixture
def app() -> Iterator[Flask]:
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # let Flask answer 500 as in production
    RequestContext(app)

    @app.get("/admins", endpoint="admins.list")
    def admins() -> dict[str, object]:
        info = context.current()
        return {"request_id": info.request_id, "ip": info.ip_address, "ua": info.user_agent,
                "route": info.route_name}

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/forbidden")
    def forbidden() -> str:
        abort(403)

    yield app


def test_valid_header_is_kept_and_echoed(app: Flask) -> None:
    response = app.test_client().get(
        "/admins", headers={"X-Request-ID": "{" + V4.upper() + "}", "User-Agent": "curl/8"}
    )
    assert response.headers["X-Request-ID"] == V4
    assert response.json == {"request_id": V4, "ip": "127.0.0.1", "ua": "curl/8",
                             "route": "admins.list"}


@pytest.mark.parametrize("header", ["6fa459ea-ee8a-3ca4-894e-db77e160355e", "garbage", None])
def test_invalid_or_missing_header_is_replaced_by_a_new_v4(app: Flask, header: str | None) -> None:
    headers = {"X-Request-ID": header} if header else {}
    response = app.test_client().get("/admins", headers=headers)
    echoed = response.headers["X-Request-ID"]
    assert uuid.UUID(echoed).version == 4 and echoed != header
    assert response.json["request_id"] == echoed  # type: ignore[index]


def test_php_fallbacks_for_missing_user_agent(app: Flask) -> None:
    response = app.test_client().get("/admins", headers={"User-Agent": ""})
    assert response.json["ua"] == "unknown"  # type: ignore[index]


@pytest.mark.parametrize(("path", "status"), [("/nowhere", 404), ("/boom", 500), ("/forbidden", 403)])
def test_id_is_echoed_on_error_responses(app: Flask, path: str, status: int) -> None:
    response = app.test_client().get(path, headers={"X-Request-ID": V4})
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == V4


def test_context_is_cleared_after_the_request(app: Flask) -> None:
    app.test_client().get("/admins", headers={"X-Request-ID": V4})
    assert context.current() == context.EMPTY
