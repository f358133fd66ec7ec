"""``TraceHandler``: an app configured with ``dictConfig`` logs inside Flask requests and gets
traces carrying the request's id, with exceptions recorded without their secrets; a dead
database raises nothing into the app; the handler cannot feed on the writer's own logging."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from trace_service import migrate
from trace_service.config import DatabaseURL, WriterConfig
from trace_service.db import create_engine
from trace_service.flask_ext import RequestContext
from trace_service.log_handler import TraceHandler, severity_of
from trace_service.reader import StoredTrace, read_traces
from trace_service.writer import TraceWriter

# dictConfig names the writer by reference, as an app's logging config would.
WRITER: TraceWriter | None = None
APP_LOGGER = "shop.checkout"


@pytest.fixture
def configured(database_url: str) -> Iterator[TraceWriter]:
    """The app's logging set up by dictConfig with a TraceHandler on ``shop``; undone after."""
    global WRITER
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    engine.dispose()
    WRITER = TraceWriter.from_config(WriterConfig(database_url=DatabaseURL(database_url)), strict=False)
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"traces": {
            "class": "trace_service.log_handler.TraceHandler", "level": "INFO",
            "writer": f"ext://{__name__}.WRITER",
            "event_keys": {"shop.checkout:payment declined for order %s": "checkout.declined",
                           "shop": "shop.event"}}},
        "loggers": {"shop": {"handlers": ["traces"], "level": "DEBUG", "propagate": False}},
    })
    yield WRITER
    logger = logging.getLogger("shop")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    WRITER.close(2)
    WRITER = None


def shop_app() -> Flask:
    app = Flask(__name__)
    RequestContext(app)
    log = logging.getLogger(APP_LOGGER)

    @app.post("/orders/<int:order>/pay")
    def pay(order: int) -> Any:
        log.info("payment started", extra={"event_key": "checkout.payment", "order": order,
                                            "card": "4111 1111 1111 1111",
                                            "amount": Decimal("12.50"), "tags": {"eu"}})
        log.warning("payment declined for order %s", order)
        try:
            raise ValueError("gateway said: password=hunter2 rejected")
        except ValueError:
            log.exception("payment gateway failed")
        log.debug("below the handler's level: not recorded")
        return {"ok": True}

    return app


def stored(writer: TraceWriter) -> list[StoredTrace]:
    assert writer.flush(10) and writer.engine is not None
    return read_traces(writer.engine)


def test_log_records_in_a_request_become_masked_traces_with_its_request_id(
        configured: TraceWriter) -> None:
    request_id = "5b8f2c1e-3d4a-4e6f-9a0b-1c2d3e4f5a6b"
    response = shop_app().test_client().post("/orders/42/pay", headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    rows = stored(configured)
    assert [(r.event_key, r.severity) for r in rows] == [
        ("checkout.payment", "info"), ("checkout.declined", "warning"), ("shop.event", "error")]
    assert {r.request_id for r in rows} == {request_id}
    assert {r.route_name for r in rows} == {"pay"}
    first, second, third = (r.metadata or {} for r in rows)
    assert first["message"] == "payment started" and first["order"] == 42
    assert first["amount"] == "12.50" and first["tags"] == ["eu"]  # as PHP's JSON can hold them
    assert first["card"] != "4111 1111 1111 1111"  # masked like any metadata
    assert second["message"] == "payment declined for order 42" and second["logger"] == APP_LOGGER
    assert third["exception"]["type"] == "builtins.ValueError"
    text = " ".join(r.metadata_text or "" for r in rows)
    assert "hunter2" not in text and "4111 1111 1111 1111" not in text
    assert "Traceback" not in text and "File " not in text  # no frames, no locals


def test_a_dead_database_raises_nothing_into_the_app(unreachable_url: str) -> None:
    writer = TraceWriter.from_config(WriterConfig(database_url=DatabaseURL(unreachable_url),
                                                  connect_timeout=0.2), strict=False)
    logger = logging.getLogger("shop.dead")
    handler = TraceHandler(writer)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        app = Flask(__name__)
        RequestContext(app)

        @app.get("/")
        def index() -> Any:
            for n in range(50):
                logger.error("still serving %d", n)
            return {"ok": True}

        assert app.test_client().get("/").status_code == 200
        writer.flush(3)
        stats = writer.stats()
        assert stats.written == 0 and stats.submitted == 50  # every one counted, none raised
    finally:
        logger.removeHandler(handler)
        writer.close(1)


@pytest.fixture
def unreachable_url() -> str:
    return "mysql+pymysql://root@127.0.0.1:1/nowhere"


def test_the_writers_own_logging_is_not_fed_back(sqlite_url: str) -> None:
    """A handler on the root logger: the writer's warnings (here: every record rejected) and
    a record logged from inside the handler are not recorded again."""
    migrate.upgrade(create_engine(sqlite_url))
    writer = TraceWriter.from_config(WriterConfig(database_url=DatabaseURL(sqlite_url),
                                                  log_interval=0), strict=False)
    handler = TraceHandler(writer)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("trace_service.writer").warning("the writer's own line")
        logging.getLogger("app").warning("x", extra={"event_key": "k" * 300})  # rejected: too long
        assert writer.flush(5)
        stats = writer.stats()
    finally:
        root.removeHandler(handler)
        writer.close(1)
    assert stats.submitted == 1 and stats.dropped_by_reason["invalid"] == 1


def test_a_failure_goes_to_handle_error_unless_the_writer_is_strict(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    migrate.upgrade(create_engine(sqlite_url))
    writer = TraceWriter.from_config(WriterConfig(database_url=DatabaseURL(sqlite_url)), strict=False)
    handler = TraceHandler(writer)
    seen: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", seen.append)

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("boom")

    monkeypatch.setattr(writer, "record", broken)
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "hello", None, None)
    handler.handle(record)
    assert seen == [record]
    writer.strict = True
    with pytest.raises(RuntimeError):
        handler.handle(record)
    writer.close(1)


@pytest.mark.parametrize(("level", "severity"), [
    (logging.DEBUG, "debug"), (logging.INFO, "info"), (25, "info"), (logging.WARNING, "warning"),
    (logging.ERROR, "error"), (logging.CRITICAL, "critical"), (60, "critical"), (5, "debug")])
def test_levels_map_to_severities(level: int, severity: str) -> None:
    assert severity_of(level) == severity


def test_event_keys_by_template_then_logger_then_parent_else_the_logger_name() -> None:
    handler = TraceHandler(TraceWriter(None, sink=_NullSink()),
                           event_keys={"a.b:hi %s": "by.template", "a": "by.parent"})

    def key(name: str, msg: str, **extra: Any) -> str:
        record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, None, None)
        record.__dict__.update(extra)
        return handler.event_key(record)

    assert key("a.b", "hi %s") == "by.template"
    assert key("a.b.c", "other") == "by.parent"
    assert key("z", "other") == "log.z"
    assert key("a.b", "hi %s", event_key="given") == "given"


class _NullSink:
    def write(self, items: list[Any]) -> Any:
        raise AssertionError("not written in this test")

    def probe(self) -> None:
        return None
