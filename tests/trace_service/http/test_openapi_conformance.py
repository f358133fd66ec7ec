"""Schemathesis against the live app: every answer conforms to the served OpenAPI document.

The schema is loaded from the app itself (``GET /api/openapi.json``), and schemathesis's own
engine (what its CLI runs: examples, coverage, fuzzing and stateful phases) sends real HTTP
requests to the app served on a loopback port, so a change to the document or to an endpoint
that makes them disagree fails here. Every check schemathesis has is on; the two whose expected
statuses contradict a documented choice are widened by one status each (README, "OpenAPI
conformance"). Bounded and deterministic: few examples per operation, derandomized with a fixed
seed, no deadline. Run alone with::

    .venv/bin/pytest tests/trace_service/http/test_openapi_conformance.py

The engine rather than ``schemathesis.pytest.from_fixture``: its lazy loader reads
``request.node._nodeid``, which pytest 9.2 removed. A server rather than ``from_wsgi``: the
engine's fuzzing phase passes ``max_redirects`` to Werkzeug's test client, which refuses it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.config._checks import NegativeDataRejectionConfig, PositiveDataAcceptanceConfig
from schemathesis.engine import events
from werkzeug.serving import make_server

from tests.trace_service.http.test_ingest import make_ingest

# Why each one is left out or widened: README.md, "OpenAPI conformance".
EXCLUDED: tuple[str, ...] = ()
# Schema-valid items can still fail a rule JSON Schema cannot state (a JSON object inside a
# metadata string, a real calendar date): the documented answer is then 422 with field errors.
POSITIVE_ALSO = "422"
# A batch over maxItems is refused as too large: 413, documented, rather than 400.
NEGATIVE_ALSO = "413"
MAX_EXAMPLES = 25   # per operation and mode: the whole module stays well under a minute on 2 cores
SEED = 20260114


@pytest.fixture(params=["sqlite", "mariadb"])
def live_schema(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The schema the app serves, bound to that app, sent with a key holding every API scope."""
    made = make_ingest(request.getfixturevalue(f"{request.param}_url"),
                       # Conformance, not throttling: the limits have tests of their own.
                       auth_failure_rate="100000/minute", ingest_rate="100000/minute")
    _, token = made.app.extensions["trace_keys"].create("schemathesis",
                                                        ["ingest", "reports:read", "traces:read"])
    server = make_server("127.0.0.1", 0, made.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="conformance-server", daemon=True)
    thread.start()
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{server.port}/api/openapi.json")
    schema.config.update(headers={"Authorization": f"Bearer {token}"}, workers=1)
    schema.config.seed = SEED
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES,
        deterministic=True, database="none")
    checks = schema.config.checks
    checks.update(included_check_names=["all"], excluded_check_names=list(EXCLUDED))
    checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=[*checks.positive_data_acceptance.expected_statuses, POSITIVE_ALSO])
    checks.negative_data_rejection = NegativeDataRejectionConfig(
        expected_statuses=[*checks.negative_data_rejection.expected_statuses, NEGATIVE_ALSO])
    yield schema
    server.shutdown()
    thread.join(10)
    made.app.extensions["trace_writer"].close(2)
    made.app.extensions["trace_engine"].dispose()


def _shorten(text: str, limit: int = 1500) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _run(stream: Iterator[events.EngineEvent]) -> tuple[list[str], set[str]]:
    """The failures of a run, and the names of the checks that ran."""
    failures: list[str] = []
    ran: set[str] = set()
    for event in stream:
        if isinstance(event, events.ScenarioFinished):
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    ran.add(node.name)
                    if node.failure_info is not None:
                        failures.append(_shorten(f"{node.name} on {event.recorder.label}: "
                                                 f"{node.failure_info.failure.title}\n"
                                                 f"{node.failure_info.failure.message}\n"
                                                 f"{node.failure_info.code_sample}"))
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            failures.append(f"error: {event!r}")
    return failures, ran


def test_every_answer_conforms_to_the_document(live_schema: Any) -> None:
    failures, ran = _run(iter(schemathesis.engine.from_schema(live_schema).execute()))
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    # Not vacuous: the checks that found this module's bugs did run.
    assert {"not_a_server_error", "status_code_conformance", "response_schema_conformance",
            "unsupported_method", "negative_data_rejection", "positive_data_acceptance",
            "ignored_auth"} <= ran, ran


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/api/telemetry/traces", {"GET", "HEAD", "POST", "OPTIONS"}),  # the lookup's GET too
    ("DELETE", "/healthz", {"GET", "HEAD", "OPTIONS"}),
])
def test_405_names_the_allowed_methods(live_schema: Any, method: str, path: str,
                                       allowed: set[str]) -> None:
    import requests

    base = live_schema.location.removesuffix("/api/openapi.json")
    response = requests.request(method, base + path, timeout=10)
    assert response.status_code == 405 and response.json()["status"] == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == allowed


def test_an_empty_batch_gets_the_documented_422(live_schema: Any) -> None:
    case = live_schema["/api/telemetry/traces"]["POST"].Case(body=[], media_type="application/json")
    response = case.call_and_validate(headers=live_schema.config.headers)
    assert response.status_code == 422 and "the batch is empty" in response.json()["error"]
