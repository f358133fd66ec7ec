"""A throwaway MariaDB database for a benchmark run, created and dropped around it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

SERVER = os.environ.get("TRACE_BENCH_MARIADB", "mysql+pymysql://root@127.0.0.1:3306")


@contextmanager
def scratch_database() -> Iterator[tuple[str, str]]:
    """Yield ``(url, name)`` of a new utf8mb4 database on the bench server; drop it after."""
    name = f"ts_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(SERVER)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield f"{SERVER}/{name}?charset=utf8mb4", name
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()
