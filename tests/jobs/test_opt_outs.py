"""Opt-outs on MariaDB and SQLite: an opted-out admin, and an opted-out email hashed by PHP, by
us, or with a key since retired, are not stored and are counted ``opted_out``; the set reaches a
running writer at its next refresh; the email is never stored or recorded."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.hashing import Keyring, email_hash
from jobs.ledger import read_runs
from jobs.opt_out_admin import add_opt_out, list_opt_outs, remove_opt_out
from jobs.subject_rows import Subject
from tests.trace_service.http.test_ingest import make_ingest
from trace_service import migrate
from trace_service.config import DatabaseURL, WriterConfig
from trace_service.db import create_engine
from trace_service.opt_outs import OptOutCache, OptOutSet, load_opt_outs
from trace_service.reader import read_traces
from trace_service.writer import TraceWriter

RETIRED = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
ACTIVE = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
KEYS = f'[{{"id":"k0","key":"{RETIRED}"}},{{"id":"k1","key":"{ACTIVE}"}}]'
KEYRING = Keyring.from_json(KEYS, "k1")
ALICE, BOB = "Alice@Example.COM", "bob@example.com"


@pytest.fixture
def migrated(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("CRYPTO_KEYS", KEYS)
    monkeypatch.setenv("CRYPTO_ACTIVE_KEY_ID", "k1")
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    return engine


def writer_for(database_url: str) -> TraceWriter:
    config = WriterConfig(database_url=DatabaseURL(database_url), opt_out_refresh=3600)
    writer = TraceWriter.from_config(config, strict=True)
    assert writer.opt_outs is not None and writer.opt_outs.reload()  # no wait for the thread
    return writer


def test_opted_out_people_are_not_stored_whoever_hashed_their_email(
        migrated: Engine, database_url: str) -> None:
    add_opt_out(migrated, Subject(actor_id=7), KEYRING)
    add_opt_out(migrated, Subject(email=ALICE), KEYRING)
    php_retired = email_hash(ALICE.lower(), KEYRING, "k0").as_metadata()  # PHP, before rotation
    writer = writer_for(database_url)
    try:
        writer.record("by.actor", actor_admin_id=7)
        writer.record("by.php.retired.key", metadata={**php_retired, "n": 1})
        writer.record("by.us", metadata={"email": ALICE.upper()})  # our masker hashes it (k1)
        writer.record("in.text", metadata={"note": f"mail from {ALICE} bounced"})
        writer.record("other.actor", actor_admin_id=8, metadata={"email": BOB})
        writer.record("no.subject", metadata={"note": "hash-like but not one: " + "a" * 64})
        assert writer.flush(10)
        stats = writer.stats()
    finally:
        writer.close(2)
    assert [r.event_key for r in read_traces(migrated)] == ["other.actor", "no.subject"]
    assert stats.discarded_by_reason["opted_out"] == 4
    assert stats.dropped == 0 and stats.pending == 0


def test_a_new_opt_out_reaches_a_running_writer_at_its_next_refresh(
        migrated: Engine, database_url: str) -> None:
    writer = writer_for(database_url)
    assert writer.opt_outs is not None
    try:
        writer.record("before", actor_admin_id=9)
        assert writer.flush(5)
        add_opt_out(migrated, Subject(actor_id=9), KEYRING)
        writer.opt_outs.reload()  # what the refresher thread does every TRACE_OPT_OUT_REFRESH_SECONDS
        writer.record("after", actor_admin_id=9)
        assert writer.flush(5)  # decided when written, by the set in force then
        assert remove_opt_out(migrated, Subject(actor_id=9), KEYRING) == 1
        writer.opt_outs.reload()
        writer.record("withdrawn", actor_admin_id=9)
        assert writer.flush(5)
    finally:
        writer.close(2)
    assert [r.event_key for r in read_traces(migrated)] == ["before", "withdrawn"]


def test_the_first_read_loads_the_set_and_the_thread_keeps_it_fresh(migrated: Engine) -> None:
    add_opt_out(migrated, Subject(actor_id=3), KEYRING)
    cache = OptOutCache(migrated, refresh=0.05)
    try:
        assert cache.current.actor_ids == frozenset({3})  # loaded by the first read
        add_opt_out(migrated, Subject(actor_id=4), KEYRING)
        for _ in range(200):
            if 4 in cache.current.actor_ids:
                break
            time.sleep(0.05)
        assert cache.current.actor_ids == frozenset({3, 4})
    finally:
        cache.stop()


def test_a_forked_child_reads_with_its_own_thread_and_connection(migrated: Engine) -> None:
    add_opt_out(migrated, Subject(actor_id=3), KEYRING)
    cache = OptOutCache(migrated, refresh=3600)
    assert cache.current.actor_ids == frozenset({3})
    parent_engine = cache._own
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh start, not the parent's engine or event
        try:
            ok = cache.current.actor_ids == frozenset({3}) and cache._own is not parent_engine
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    cache.stop()


def test_when_the_database_cannot_answer_the_last_set_stays(migrated: Engine) -> None:
    add_opt_out(migrated, Subject(actor_id=3), KEYRING)
    cache = OptOutCache(migrated, refresh=3600)
    assert cache.reload()
    with migrated.begin() as conn:
        conn.execute(sa.text("DROP TABLE trace_opt_outs"))
    assert not cache.reload()
    assert cache.current.actor_ids == frozenset({3})


def test_an_email_is_kept_only_as_its_hash_under_every_key_and_never_recorded(migrated: Engine) -> None:
    assert add_opt_out(migrated, Subject(email=ALICE), KEYRING) == 2
    assert add_opt_out(migrated, Subject(email=ALICE), KEYRING) == 0  # idempotent
    entries = list_opt_outs(migrated)
    assert sorted((e.kind, e.key_id) for e in entries) == [("email_hash", "k0"), ("email_hash", "k1")]
    loaded = load_opt_outs(migrated)
    assert loaded.email_hashes == {email_hash(ALICE.lower(), KEYRING, k).hash for k in ("k0", "k1")}
    with migrated.connect() as conn:
        everything = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM trace_opt_outs"))
                              for v in row)
    runs = read_runs(migrated, "opt_out")
    recorded = " ".join(str(run) for run in runs)
    for text in (everything, recorded, repr(loaded), " ".join(e.shown() for e in entries)):
        assert "alice" not in text.lower()
    assert any("opt_out" in str(run) for run in runs)
    assert remove_opt_out(migrated, Subject(email=ALICE.lower()), KEYRING) == 2


def test_the_endpoint_discards_an_opted_out_actor_and_says_why(database_url: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTO_KEYS", KEYS)
    monkeypatch.setenv("CRYPTO_ACTIVE_KEY_ID", "k1")
    made = make_ingest(database_url)
    engine = made.app.extensions["trace_engine"]
    writer: TraceWriter = made.app.extensions["trace_writer"]
    add_opt_out(engine, Subject(actor_id=5), KEYRING)
    add_opt_out(engine, Subject(email=ALICE), KEYRING)
    assert writer.opt_outs is not None and writer.opt_outs.reload()
    items: list[dict[str, Any]] = [{"event_key": "a", "actor_admin_id": 5},
                                   {"event_key": "b", "metadata": {"email": ALICE}},
                                   {"event_key": "c", "actor_admin_id": 6}]
    try:
        response = made.post(items)
        stored = made.stored()
        stats = writer.stats()
    finally:
        writer.close(2)
    answers = [(i["status"], i.get("reason")) for i in response.json["items"]]
    # The actor is known at once; an email only once masked, in the writer thread.
    assert answers == [("discarded", "opted_out"), ("accepted", None), ("accepted", None)]
    assert [r.event_key for r in stored] == ["c"]
    assert stats.discarded_by_reason["opted_out"] == 2


def test_an_opt_out_set_says_only_how_many_it_holds() -> None:
    opted = OptOutSet(frozenset({1}), frozenset({"ab" * 32}))
    assert repr(opted) == "OptOutSet(actors=1, email_hashes=1)" and "abab" not in repr(opted)
    assert opted.excludes(None, '{"x":"[email_hash:' + "ab" * 32 + ']"}')
    assert not opted.excludes(2, '{"x":"' + "ab" * 31 + '"}') and not OptOutSet()
