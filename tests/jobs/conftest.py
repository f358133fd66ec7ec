"""Fixtures of the jobs tests: a telemetry_traces table in a given layout, with our tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from jobs.retention_policy import PartitionPolicy, PrunePolicy, RetentionPolicy
from tests.support.php_schema import create_php_table, php_insert
from trace_service import migrate
from trace_service.db import create_engine, table_layout

# Small batches and no pauses, so a few hundred rows make many batches quickly.
POLICY = RetentionPolicy(
    days=30,
    prune=PrunePolicy(batch_size=7, min_batch_size=3, max_batch_size=50, budget_ms=1000),
    partitions=PartitionPolicy(days_ahead=3, lock_wait_timeout=1, retries=3, backoff_seconds=0.2,
                               long_transaction_seconds=1),
)


@pytest.fixture
def maria(mariadb_url: str) -> Iterator[Engine]:
    """An engine on a new, empty MariaDB database."""
    engine = create_engine(mariadb_url, io_timeout=60, pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture
def php_table(maria: Engine) -> Callable[[str], Engine]:
    """Create telemetry_traces in a PHP layout, then our tables beside it (migrations adopt it)."""
    def make(layout: str) -> Engine:
        create_php_table(maria, layout)
        migrate.upgrade(maria)
        return maria
    return make


def insert_rows(engine: Engine, times: list[str], event_key: str = "auth.login.attempt") -> None:
    """Rows as PHP writes them: wall-clock times as strings, in the layout's columns."""
    layout = table_layout(engine)
    for value in times:
        values: dict[str, object] = {"event_key": event_key, "severity": "info",
                                     layout.time_column: value}
        if layout.actor_style == "type_id":
            values.update(actor_type="admin", actor_id=7)
        else:
            values["actor_admin_id"] = 7
        php_insert(engine, layout.name, **values)


def stored_times(engine: Engine) -> list[str]:
    """The time column of every row, as text, in id order."""
    col = table_layout(engine).time_column
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT {col} FROM telemetry_traces ORDER BY id")).scalars()
        return [value if isinstance(value, str) else value.strftime("%Y-%m-%d %H:%M:%S.%f")
                for value in rows]
