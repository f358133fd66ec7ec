"""Leak scan ``--fix`` on a server whose GLOBAL sql_mode changes how literals parse: secrets
masked, the hostile text next to them kept byte for byte, nothing else touched."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from jobs.leak_scan import run_scan
from jobs.ledger import read_runs
from tests.support.audit_table import plant_audit_logs
from tests.support.compliance_seed import KEYRING
from tests.support.sql_modes import HOSTILE, MODES, snapshot
from trace_service import migrate
from trace_service.db import create_engine
from trace_service.php_json import encode_metadata
from trace_service.reader import read_traces

TOKEN = "abcdEFGH1234ijkl5678mnop"


@pytest.fixture
def leaking(mariadb_url: str) -> Iterator[Engine]:
    """Rows as PHP might have stored them: a secret beside hostile text (normal mode)."""
    plant_audit_logs(mariadb_url)
    engine = create_engine(mariadb_url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        for text in HOSTILE:
            conn.execute(sa.text(
                "INSERT INTO telemetry_traces (event_key, severity, user_agent, route_name, metadata, "
                "created_at) VALUES ('x.leak', 'info', :agent, :route, :metadata, '2026-01-02 03:04:05')"),
                {"agent": f"{text} Authorization: Bearer {TOKEN}", "route": text,
                 "metadata": encode_metadata({"password": "hunter2", "note": text, f"k{text}": [text]})})
    yield engine
    engine.dispose()


@pytest.mark.parametrize("mode", MODES.values(), ids=list(MODES))
def test_fix_masks_the_secret_and_keeps_hostile_text_byte_for_byte(
    leaking: Engine, mariadb_url: str, server_sql_mode: Callable[[str], AbstractContextManager[None]],
    mode: str,
) -> None:
    before = snapshot(leaking, skip=("telemetry_traces", "trace_job_runs"))
    with server_sql_mode(mode):
        engine = create_engine(mariadb_url)  # every connection of the fix opened in the window
        try:
            result = run_scan(engine, Masker(load_masking_policy(), KEYRING), fix=True, batch_size=5)
        finally:
            engine.dispose()
    assert result.rows_fixed == len(HOSTILE)
    rows = read_traces(leaking)
    assert len(rows) == len(HOSTILE)
    for row, text in zip(rows, HOSTILE, strict=True):
        assert row.route_name == text
        assert row.user_agent is not None and TOKEN not in row.user_agent
        assert row.user_agent == f"{text} Authorization: Bearer [masked]"
        metadata = json.loads(row.metadata_text or "")
        assert (metadata["password"], metadata["note"], metadata[f"k{text}"]) == ("[masked]", text, [text])
    assert "hunter2" not in str(snapshot(leaking, skip=()))
    (ledger_row,) = read_runs(leaking, job="leak_scan_fix")
    assert ledger_row.record.status == "ok"
    assert snapshot(leaking, skip=("telemetry_traces", "trace_job_runs")) == before
