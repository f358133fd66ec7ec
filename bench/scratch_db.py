"""A throwaway MariaDB database for a benchmark run, created and dropped around it, and the
baseline several benches compare against: raw PyMySQL ``executemany`` of the same rows."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql
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


def connect(database: str) -> pymysql.connections.Connection:
    """A plain PyMySQL connection to ``database`` on the bench server (no SQLAlchemy, no guard)."""
    return pymysql.connect(host="127.0.0.1", user="root", database=database, charset="utf8mb4")


def executemany_rate(database: str, statement: str, rows: list[tuple[object, ...]], batch: int,
                     companion: tuple[str, list[tuple[object, ...]]] | None = None) -> float:
    """Rows/s of raw PyMySQL ``executemany`` of ``rows``, ``batch`` at a time, a commit each.
    ``companion``: a second statement and its rows (one per row), the same slice of them
    executed in each batch's transaction."""
    conn = connect(database)
    start = time.perf_counter()
    with conn.cursor() as cur:
        for i in range(0, len(rows), batch):
            cur.executemany(statement, rows[i:i + batch])
            if companion is not None:
                cur.executemany(companion[0], companion[1][i:i + batch])
            conn.commit()
    seconds = time.perf_counter() - start
    conn.close()
    return len(rows) / seconds
