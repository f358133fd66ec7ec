"""The trace writer against real databases (MariaDB and SQLite)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from tests.support.php_schema import create_php_table, php_insert
from trace_service import context
from trace_service.db import create_engine
from trace_service.errors import TraceInputError, TraceWriteError
from trace_service.reader import read_traces
from trace_service.writer import TraceWriter

MakeWriter = Callable[..., TraceWriter]
V4 = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM telemetry_traces")).scalar_one())


def assert_balanced(writer: TraceWriter) -> None:
    stats = writer.stats()
    assert stats.pending == 0
    assert stats.written + stats.dropped == stats.submitted


def test_round_trip_layout_a(migrated_engine: Engine, make_writer: MakeWriter) -> None:
    writer = make_writer(table_timezone="Africa/Cairo")
    moment = datetime(2026, 11, 24, 5, 17, 13, 739142, tzinfo=UTC)
    assert writer.record(
        "auth.login.attempt", severity="WARN", actor_admin_id=7,
        metadata={"target_id": 3, "name": "Zoë", "path": "a/b", "ratio": 12.0},
        route_name="admins.list", request_id=V4, ip_address="10.0.0.1", user_agent="curl/8",
        occurred_at=moment,
    )
    assert writer.flush(5)
    (row,) = read_traces(migrated_engine)
    assert (row.event_key, row.severity, row.actor_admin_id, row.route_name, row.request_id) == (
        "auth.login.attempt", "warning", 7, "admins.list", V4)
    assert (row.ip_address, row.user_agent) == ("10.0.0.1", "curl/8")
    assert row.metadata_text == '{"target_id":3,"name":"Zo\\u00eb","path":"a\\/b","ratio":12}'
    assert row.occurred_at == "2026-11-24 07:17:13.739142"  # Cairo wall clock, as PHP writes
    assert_balanced(writer)


def test_empty_metadata_is_stored_as_sql_null(migrated_engine: Engine, make_writer: MakeWriter) -> None:
    writer = make_writer()
    empties: tuple[None | dict[str, object] | list[object], ...] = (None, {}, [])
    for empty in empties:
        writer.record("x.empty", metadata=empty)
    writer.flush(5)
    with migrated_engine.connect() as conn:
        values = conn.execute(sa.text("SELECT metadata FROM telemetry_traces")).scalars().all()
    assert values == [None, None, None]


def test_strings_are_cut_to_column_sizes(migrated_engine: Engine, make_writer: MakeWriter) -> None:
    writer = make_writer()
    writer.record("x.long", user_agent="u" * 300, route_name="r" * 400, request_id="q" * 100,
                  ip_address="1" * 60)
    writer.flush(5)
    (row,) = read_traces(migrated_engine)
    assert (len(row.user_agent or ""), len(row.route_name or ""), len(row.request_id or ""),
            len(row.ip_address or "")) == (255, 255, 64, 45)


def test_context_fills_fields_the_caller_did_not_pass(
    migrated_engine: Engine, make_writer: MakeWriter
) -> None:
    writer = make_writer()
    with context.trace_context(V4, route_name="jobs.prune", ip_address="10.1.1.1"):
        writer.record("job.start")
        writer.record("job.step", route_name="explicit.route")
    writer.flush(5)
    first, second = read_traces(migrated_engine)
    assert (first.request_id, first.route_name, first.ip_address) == (V4, "jobs.prune", "10.1.1.1")
    assert (second.request_id, second.route_name) == (V4, "explicit.route")


def test_stored_value_does_not_change_when_the_caller_mutates_its_dict(
    migrated_engine: Engine, make_writer: MakeWriter
) -> None:
    writer = make_writer(flush_interval=1.0)
    metadata = {"step": "before", "items": [1]}
    writer.record("x.mutate", metadata=metadata)
    metadata["step"] = "after"
    metadata["items"].append(2)  # type: ignore[attr-defined]
    writer.flush(5)
    (row,) = read_traces(migrated_engine)
    assert row.metadata == {"step": "before", "items": [1]}


def test_caller_rollback_does_not_remove_traces(mariadb_url: str, make_writer: MakeWriter) -> None:
    app_engine = create_engine(mariadb_url)
    try:
        from trace_service import migrate

        migrate.upgrade(app_engine)
        writer = make_writer(mariadb_url, writer_mode="inline")
        with app_engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(sa.text("INSERT INTO telemetry_traces (event_key, created_at) "
                                 "VALUES ('app.own.row', NOW(6))"))
            assert writer.record("auth.stepup.failure", actor_admin_id=3)
            transaction.rollback()
        assert [t.event_key for t in read_traces(app_engine)] == ["auth.stepup.failure"]
    finally:
        app_engine.dispose()


@pytest.mark.parametrize("layout", ["B", "B0"])
def test_round_trip_legacy_layouts_beside_php_rows(
    engine: Engine, make_writer: MakeWriter, layout: str
) -> None:
    create_php_table(engine, layout)
    actor = {"actor_type": "admin", "actor_id": 2} if layout == "B" else {"actor_admin_id": 2}
    php_insert(engine, layout, event_key="auth_login_failure", severity="warning",
               metadata='{"path":"a\\/b","name":"Zo\\u00eb"}',
               occurred_at="2026-11-24 07:17:13.739142", **actor)
    writer = make_writer(table_timezone="Africa/Cairo")
    writer.record("auth.login.attempt", severity="critical", actor_admin_id=7,
                  metadata={"k": "v"}, occurred_at=datetime(2026, 11, 24, 6, 0, tzinfo=UTC))
    writer.record("system.tick", severity="debug")
    writer.flush(5)
    php_row, ours, system = read_traces(engine)
    assert php_row.metadata == {"path": "a/b", "name": "Zoë"}
    assert php_row.actor_admin_id == 2 and php_row.occurred_at == "2026-11-24 07:17:13.739142"
    assert ours.actor_admin_id == 7 and ours.occurred_at == "2026-11-24 08:00:00.000000"
    assert ours.severity == "critical"  # allowed by both B and B0
    assert system.severity == ("info" if layout == "B" else "debug")
    if layout == "B":
        assert (ours.actor_type, system.actor_type, system.actor_admin_id) == ("admin", "system", None)
    assert_balanced(writer)


def test_invalid_event_key_is_dropped_and_counted_when_not_strict(
    migrated_engine: Engine, make_writer: MakeWriter
) -> None:
    writer = make_writer(strict=False)
    assert not writer.record("")
    assert not writer.record("k" * 256)
    assert not writer.record(None)  # type: ignore[arg-type]
    assert not writer.record("x.bad.actor", actor_admin_id="seven")  # type: ignore[arg-type]
    assert writer.record("x.php.actor", actor_admin_id="2")  # type: ignore[arg-type]
    assert writer.flush(5)
    stats = writer.stats()
    assert stats.dropped_by_reason["invalid"] == 4 and stats.written == 1
    assert_balanced(writer)


def test_strict_writer_raises_on_invalid_input(migrated_engine: Engine, make_writer: MakeWriter) -> None:
    writer = make_writer(strict=True)
    with pytest.raises(TraceInputError, match="event_key='' is invalid"):
        writer.record("")
    assert writer.stats().dropped_by_reason["invalid"] == 1


def test_strict_writer_raises_when_every_insert_fails(engine: Engine, make_writer: MakeWriter) -> None:
    # No migration: the table does not exist, so every insert fails.
    writer = make_writer(strict=True)
    writer.record("x.lost")
    with pytest.raises(TraceWriteError, match="1 trace\\(s\\) lost to errors"):
        writer.flush(5)


def test_swallowing_writer_counts_failed_inserts_instead(engine: Engine, make_writer: MakeWriter) -> None:
    writer = make_writer(strict=False)
    for _ in range(3):
        assert writer.record("x.lost") is True  # accepted into the queue
    assert writer.flush(5) is True
    stats = writer.stats()
    assert stats.dropped_by_reason["db_error"] == 3 and stats.written == 0
    assert stats.last_error and "telemetry_traces" in stats.last_error
    assert_balanced(writer)


def test_full_queue_drops_and_counts_without_blocking(
    migrated_engine: Engine, make_writer: MakeWriter
) -> None:
    writer = make_writer(queue_size=5, batch_size=5, flush_interval=60)
    writer._worker.start = lambda: True  # type: ignore[method-assign]  # no drain: the queue stays full
    accepted = [writer.record("x.fill") for _ in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert writer.stats().dropped_by_reason["queue_full"] == 3


def test_unknown_severity_is_stored_as_info_and_counted(
    migrated_engine: Engine, make_writer: MakeWriter
) -> None:
    writer = make_writer()
    writer.record("x.sev", severity="LOUD")
    writer.flush(5)
    (row,) = read_traces(migrated_engine)
    assert row.severity == "info" and writer.stats().unknown_severity == 1


def test_records_after_close_are_dropped_as_shutdown(
    migrated_engine: Engine, make_writer: MakeWriter
) -> None:
    writer = make_writer()
    writer.record("x.before")
    assert writer.close(5)
    assert not writer.record("x.after")
    stats = writer.stats()
    assert (stats.written, stats.dropped_by_reason["shutdown"]) == (1, 1)
    assert count_rows(migrated_engine) == 1


def test_inline_mode_writes_synchronously(migrated_engine: Engine, make_writer: MakeWriter) -> None:
    writer = make_writer(writer_mode="inline")
    assert writer.record("x.inline", metadata={"a": 1})
    assert count_rows(migrated_engine) == 1  # no flush needed
    assert writer._worker.thread is None


def test_many_threads_every_record_accounted(migrated_engine: Engine, make_writer: MakeWriter) -> None:
    writer = make_writer(batch_size=200, queue_size=100_000)
    start = threading.Event()

    def hammer() -> None:
        start.wait(5)
        for i in range(500):
            writer.record("x.threads", metadata={"i": i})

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    start.set()
    for thread in threads:
        thread.join(30)
    assert writer.flush(30)
    assert writer.stats().written == 4000 == count_rows(migrated_engine)
    assert_balanced(writer)


def test_a_row_the_server_refuses_costs_only_that_row(mariadb_url: str, make_writer: MakeWriter) -> None:
    engine = create_engine(mariadb_url)
    try:
        create_php_table(engine, "B")
        # A DBA narrowed a column under us: the cached lengths do not know, the server refuses.
        writer = make_writer(mariadb_url, strict=False, flush_interval=5)
        writer.record("x.warmup")
        writer.flush(5)
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE telemetry_traces MODIFY route_name VARCHAR(5) NULL"))
        writer.record("x.ok", route_name="short")
        writer.record("x.too.long", route_name="much too long")
        writer.record("x.ok2")
        writer.flush(5)
        assert [t.event_key for t in read_traces(engine)] == ["x.warmup", "x.ok", "x.ok2"]
        assert writer.stats().dropped_by_reason["db_error"] == 1
        assert_balanced(writer)
    finally:
        engine.dispose()


def test_forked_child_writes_with_its_own_thread_and_counters(
    migrated_engine: Engine, make_writer: MakeWriter
) -> None:
    writer = make_writer()
    writer.record("x.parent")
    writer.flush(5)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write, report its own stats, exit without running pytest's atexit
        code = 1
        try:
            os.close(read_fd)
            writer.strict = False
            writer.record("x.child")
            ok = writer.flush(10)
            stats = writer.stats()
            os.write(write_fd, json.dumps([ok, stats.submitted, stats.written]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read() or "null")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == [True, 1, 1]  # fresh counters, own thread
    writer.record("x.parent.again")
    writer.flush(5)
    assert sorted(t.event_key for t in read_traces(migrated_engine)) == [
        "x.child", "x.parent", "x.parent.again"]
    assert writer.stats().written == 2


def test_interpreter_exit_flushes_within_the_deadline(migrated_engine: Engine, database_url: str) -> None:
    import subprocess
    import sys

    script = (
        "from trace_service.config import WriterConfig, DatabaseURL\n"
        "from trace_service.writer import TraceWriter\n"
        f"w = TraceWriter.from_config(WriterConfig(database_url=DatabaseURL({database_url!r}), "
        "flush_interval=30, shutdown_timeout=10))\n"
        "for i in range(250):\n"
        "    w.record('x.exit', metadata={'i': i})\n"
        # no flush, no close: the atexit hook must write what is queued
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert count_rows(migrated_engine) == 250


def test_secrets_are_masked_before_they_reach_the_table(
    migrated_engine: Engine, make_writer: MakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = "00112233445566778899aabbccddeeff" * 2
    monkeypatch.setenv("CRYPTO_KEYS", '[{"id": "k1", "key": "' + root + '"}]')
    monkeypatch.setenv("CRYPTO_ACTIVE_KEY_ID", "k1")
    writer = make_writer()
    metadata = {"password": "hunter2", "note": "Bearer abcdefghijklmnop", "email": "Alice@Example.COM",
                "target_id": 3}
    writer.record("auth.login.failure", metadata=metadata)
    metadata["password"] = "changed after record()"
    writer.flush(5)
    (row,) = read_traces(migrated_engine)
    stored = row.metadata or {}
    assert stored["password"] == "[masked]" and stored["note"] == "Bearer [masked]"
    assert stored["email_hash"] == "dbd64f6ac7c11c943fbf0964ec329bac84d7ef7553121c7fdbd906a28f63decf"
    assert "hunter2" not in (row.metadata_text or "") and "Alice" not in (row.metadata_text or "")
    assert stored["target_id"] == 3
    assert {"rule": "key", "path": "password"} in stored["_masked"]


def test_a_record_whose_masking_fails_is_dropped_never_stored_unmasked(
    migrated_engine: Engine, make_writer: MakeWriter
) -> None:
    class Broken(Masker):
        def mask(self, metadata: object, *, owned: bool = False) -> object:
            raise RuntimeError("bug")

    writer = make_writer(strict=False, masker=Broken(load_masking_policy()))
    writer.record("x.secret", metadata={"password": "hunter2"})
    writer.record("x.no.metadata")
    writer.flush(5)
    assert [t.event_key for t in read_traces(migrated_engine)] == ["x.no.metadata"]
    assert writer.stats().dropped_by_reason["masking_error"] == 1
    assert "hunter2" not in (writer.stats().last_error or "")


def test_a_writer_thread_that_cannot_start_costs_a_counted_drop_and_is_retried(
    migrated_engine: Engine, make_writer: MakeWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What CPython raises when the process is at its thread limit (RLIMIT_NPROC, cgroup pids.max).
    real_start = threading.Thread.start
    limit_reached = threading.Event()
    limit_reached.set()

    def start(thread: threading.Thread) -> None:
        if thread.name == "trace-writer" and limit_reached.is_set():
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    writer = make_writer(strict=False, flush_interval=0.01)
    assert writer.record("no.thread.1") is False
    assert writer.record("no.thread.2") is False  # within the retry delay: dropped at once
    stats = writer.stats()
    assert (stats.submitted, stats.pending, stats.dropped_by_reason["no_thread"]) == (2, 0, 2)
    assert writer.flush(1)  # nothing is left waiting for a thread that never ran

    limit_reached.clear()
    retry_at = writer._worker._start_retry_at
    # The retry delay is flush_interval; wait it out on the monotonic clock the worker reads.
    while time.monotonic() < retry_at:
        threading.Event().wait(0.005)
    assert writer.record("thread.resumed") is True
    assert writer.flush(5)
    assert [row.event_key for row in read_traces(migrated_engine)] == ["thread.resumed"]
    stats = writer.stats()
    assert (stats.submitted, stats.written, stats.dropped, stats.pending) == (3, 1, 2, 0)


def test_a_string_without_a_utf8_form_costs_only_its_row(
    migrated_engine: Engine, make_writer: MakeWriter
) -> None:
    # A lone surrogate (from a JSON "\ud800" escape, or a bad decode) cannot be encoded: the
    # driver raises before sending. The row is invalid; its batch-mates are stored; none stays
    # pending.
    writer = make_writer(strict=False, batch_size=10, flush_interval=60)
    writer.record("before")
    writer.record("bad.agent", user_agent="agent \udc80")
    writer.record("after", route_name="ok")
    assert writer.flush(5)
    assert [row.event_key for row in read_traces(migrated_engine)] == ["before", "after"]
    stats = writer.stats()
    assert (stats.written, stats.dropped_by_reason["invalid"], stats.pending) == (2, 1, 0)
    assert "\udc80" not in (stats.last_error or "")


# The thread runs the sink's two stages (trace_service.worker.StoreStage); inline, its write.
@pytest.mark.parametrize(("mode", "method"), [("thread", "prepare"), ("thread", "store"),
                                              ("inline", "write")])
def test_a_sink_bug_is_counted_and_never_reaches_the_caller(
    migrated_engine: Engine, make_writer: MakeWriter, monkeypatch: pytest.MonkeyPatch, mode: str,
    method: str,
) -> None:
    writer = make_writer(strict=False, writer_mode=mode)

    def broken(items: object) -> None:
        raise KeyError("a bug in the sink")

    monkeypatch.setattr(writer.sink, method, broken)
    accepted = writer.record("sink.bug")
    assert writer.flush(5)  # nothing left pending for ever
    stats = writer.stats()
    assert accepted is (mode == "thread")
    assert (stats.submitted, stats.pending, stats.dropped_by_reason["internal_error"]) == (1, 0, 1)
