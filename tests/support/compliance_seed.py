"""A seeded telemetry_traces for the leak scan, report and erasure tests (and the browser test).

Rows come from both sides: PHP's (inserted as PDO would, metadata as PHP's ``json_encode``
bytes, ``\\/`` and ``\\uXXXX`` escapes included) and ours (through a real ``TraceWriter``, so
masked as stored). Some PHP rows carry planted secrets; :class:`Seeded` says exactly which
(row id, column, path, kind) the scan must find and what a report over :data:`PERIOD` must count.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.hashing import Keyring, email_hash
from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from governance.reports import Period
from tests.support.php_schema import php_insert
from trace_service.config import DatabaseURL
from trace_service.db import create_engine, table_layout
from trace_service.http.config import TestingConfig
from trace_service.writer import TraceWriter

ROOT_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
CRYPTO_KEYS = f'[{{"id":"k1","key":"{ROOT_KEY}"}}]'
KEYRING = Keyring.from_json(CRYPTO_KEYS, "k1")
PERIOD = Period(date(2026, 11, 16), date(2026, 11, 22))
ALICE = "Alice@Example.COM"
ALICE_HASH = email_hash(ALICE, KEYRING).hash
BOB_HASH = email_hash("bob@example.com", KEYRING).hash

# (event_key, severity, day, metadata as PHP's json_encode wrote it, user_agent, planted findings)
PHP_PLANTED: list[tuple[str, str, str, str, str | None, list[tuple[str, str, str]]]] = [
    ("auth.logout", "info", "2026-11-16",
     '{"session_id":"Zq8vR2mXk4Lp9sT1wY6bN3cF7hJ0dG5a","path":"\\/admin\\/logout"}', None,
     [("metadata", "session_id", "key")]),
    ("auth.login.failure", "warning", "2026-11-17",
     '{"username":"ali","password":"hunter2","name":"Zo\\u00eb"}', None,
     [("metadata", "password", "key")]),
    ("admin.contact", "info", "2026-11-17",
     '{"contact":"alice@example.com","city":"\\u65e5\\u672c"}', None,
     [("metadata", "contact", "email")]),
    ("system_exception", "error", "2026-11-18",
     '{"message":"upstream refused: Authorization: Bearer abcdEFGH1234ijkl5678mnop",'
     '"file":"\\/var\\/www\\/app.php"}',
     None, [("metadata", "message", "bearer")]),
    ("system_exception", "error", "2026-11-18",
     '{"exception_message":"SQLSTATE[28000] [1045] Access denied; password=Tr0ub4dor&3",'
     '"file":"\\/var\\/www\\/src\\/Db.php"}',
     None, [("metadata", "exception_message", "credential")]),
    ("system_exception", "error", "2026-11-19",
     '{"dsn":"mysql:\\/\\/app:s3cr3tpw@db.internal\\/app"}', None,
     [("metadata", "dsn", "url_credentials")]),
    ("api.call", "info", "2026-11-20",
     '{"request":{"headers":{"X-Api-Key":"k_live_51Hx"}}}', None,
     [("metadata", "request.headers.X-Api-Key", "key")]),
    ("api.call", "info", "2026-11-21", '{"target_id":5}',
     "deploy-bot/1.0 ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", [("user_agent", "$", "github_token")]),
    ("auth.logout", "info", "2026-11-22", '{"seen":["ghp_ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210"]}', None,
     [("metadata", "seen[0]", "github_token")]),
]
PHP_CLEAN: list[tuple[str, str, str, str | None]] = [
    ("auth.login.attempt", "info", "2026-11-16",
     '{"target_id":3,"email_hash":"' + ALICE_HASH + '","email_hash_key_id":"k1",'
     '"email_hash_algo":"hmac-sha256\\/hkdf-v1"}'),
    ("auth.login.attempt", "info", "2026-11-18",
     '{"name":"Zo\\u00eb","city":"\\u65e5\\u672c","path":"a\\/b","emoji":"\\ud83d\\ude00"}'),
    ("auth.logout", "info", "2026-11-19",
     '{"session_hash":"' + hashlib.sha256(b"raw-session").hexdigest() + '"}'),
    ("auth.step_up", "warning", "2026-11-20", '{"correlation":"0123456789abcdef0123456789abcdef"}'),
    ("auth.step_up", "info", "2026-11-21", None),
    ("auth.login.attempt", "info", "2026-11-22",
     '{"ids":[1,2,3],"ok":true,"email_hash":"' + BOB_HASH + '"}'),
]
# Our writer's rows in the period: secrets go in, masked values are stored (never flagged).
OURS: list[tuple[str, str, str, dict[str, object]]] = [
    ("auth.login.attempt", "info", "2026-11-18", {"email": ALICE, "password": "pw", "target_id": 9}),
    ("auth.login.failure", "warning", "2026-11-20", {"token": "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"}),
    ("auth.login.attempt", "info", "2026-11-21", {"email": "carol@example.com"}),
]
OUTSIDE = ["2026-11-15 23:59:59.999999", "2026-11-23 00:00:00.000000"]  # just outside the period
EXPIRED = ["2026-09-01 10:00:00.000000", "2026-09-02 10:00:00.000000"]  # beyond the 30-day window
NOW = datetime(2026, 11, 24, 12, 0, 0)  # UTC


@dataclass
class Seeded:
    """What was seeded: the ids and the figures a report over PERIOD must state."""

    planted: set[tuple[int, str, str, str]] = field(default_factory=set)
    clean_php_ids: list[int] = field(default_factory=list)
    our_ids: list[int] = field(default_factory=list)
    alice_ids: set[int] = field(default_factory=set)
    by_day: Counter[str] = field(default_factory=Counter)
    by_key: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[str] = field(default_factory=Counter)
    rows_in_period: int = 0


def _last_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT MAX(id) FROM telemetry_traces")).scalar() or 0)


def _php(engine: Engine, event_key: str, severity: str, when: str, metadata: str | None,
         user_agent: str | None = None) -> int:
    layout = table_layout(engine)
    values: dict[str, object] = {"event_key": event_key, "severity": severity,
                                 layout.time_column: when, "metadata": metadata,
                                 "user_agent": user_agent or "Mozilla/5.0 (X11; Linux x86_64)",
                                 "route_name": "admins.list", "ip_address": "10.0.0.7",
                                 "request_id": "3f2b8c4e-9d1a-4b7e-8c2f-1a2b3c4d5e6f"}
    if layout.actor_style == "type_id":
        values.update(actor_type="admin", actor_id=7)
    else:
        values["actor_admin_id"] = 7
    php_insert(engine, layout.name, **values)
    return _last_id(engine)


def seed(engine: Engine, url: str, zone: str) -> Seeded:
    """Seed ``engine``'s telemetry_traces (already created) and return what was seeded."""
    out = Seeded()

    def count(event_key: str, severity: str, day: str) -> None:
        out.by_day[day] += 1
        out.by_key[event_key] += 1
        out.by_severity[severity] += 1
        out.rows_in_period += 1

    for event_key, severity, day, metadata, agent, findings in PHP_PLANTED:
        row_id = _php(engine, event_key, severity, f"{day} 09:30:00.123456", metadata, agent)
        out.planted.update((row_id, column, path, kind) for column, path, kind in findings)
        count(event_key, severity, day)
        if "alice@example.com" in (metadata or ""):
            out.alice_ids.add(row_id)
    for event_key, severity, day, clean in PHP_CLEAN:
        row_id = _php(engine, event_key, severity, f"{day} 23:59:59.000001", clean)
        out.clean_php_ids.append(row_id)
        count(event_key, severity, day)
        if ALICE_HASH in (clean or ""):
            out.alice_ids.add(row_id)
    for when in OUTSIDE + EXPIRED:
        _php(engine, "outside.period", "info", when, '{"password":"not in the period"}')
    config = TestingConfig(database_url=DatabaseURL(url), table_timezone=zone, writer_mode="inline")
    writer = TraceWriter(create_engine(url), config, owns_engine=True,
                         masker=Masker(load_masking_policy(), KEYRING))
    try:
        for event_key, severity, day, fields in OURS:
            assert writer.record(event_key, severity=severity, actor_admin_id=8, metadata=fields,
                                 occurred_at=datetime.fromisoformat(f"{day} 12:00:00"))
            row_id = _last_id(engine)
            out.our_ids.append(row_id)
            count(event_key, severity, day)
            if fields.get("email") == ALICE:
                out.alice_ids.add(row_id)
    finally:
        writer.close()
    return out
