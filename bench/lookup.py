"""Benchmark of trace lookup by request id on a large table, next to raw PyMySQL, in one run.

    .venv/bin/python bench/lookup.py [--rows 1000000] [--runs 200] [--limit 100]

Builds one layout-A table of ``--rows`` rows (MariaDB's ``seq_1_to_N`` engine) where a request
id has 100 rows: most requests' rows are consecutive, as a request writes them, and one target
request's 100 rows are spread evenly from the first row to the last (every N/100-th row), the
worst case for the lookup: each of its rows sits on a different page of the table. Then, on
the same table and interleaved run by run so that the machine's noise falls on both alike:

1. **ours**: ``trace_service.lookup.find_traces`` with ``TraceQuery(request_id=X, limit=L)``,
   what ``flask traces list --request-id X --limit L`` and ``GET /api/telemetry/traces`` run
   (layout detection cached, SQLAlchemy, the guard's hook, rows mapped to ``StoredTrace``);
2. **raw**: the same ``SELECT <the same columns> ... WHERE request_id = %s ORDER BY id DESC
   LIMIT L+1`` through a plain PyMySQL cursor, ``fetchall()``.

Each is timed for the spread target (all 100 rows in one page) and for a clustered request,
plus the second page of the target at ``--limit 50`` (the ``before_id`` cursor). Prints the
median and p99 and max of each, the ratio of the medians, the index EXPLAIN names for both
statements, and, for scale, the same statement made to ignore ``idx_request`` (a scan). Last,
two time-window lookups without a request id (a recent hour, and a day at the table's old
end), 3 runs each: there MariaDB's optimizer picks the plan, and for the old day it walks the
primary key down through every newer row.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pymysql
import sqlalchemy as sa

from bench.scratch_db import connect, scratch_database
from trace_service import migrate
from trace_service.db import create_engine, table_layout
from trace_service.lookup import TraceQuery, find_traces, lookup_sql
from trace_service.reader import select_list

PER_REQUEST = 100
TARGET = "f00dfeed-9d1a-4b7e-8c2f-1a2b3c4d5e6f"


def request_id_sql(rows: int) -> str:
    """The request id of row ``seq``: the target every rows/100-th row, else one per 100 rows."""
    stride = rows // PER_REQUEST
    return (f"IF(seq % {stride} = 0, '{TARGET}', "
            "CONCAT(LPAD(HEX(seq DIV 100), 8, '0'), '-4b7e-4c2f-8d3a-1a2b3c4d5e6f'))")


def build(engine: sa.Engine, rows: int) -> None:
    """Fill telemetry_traces with ``rows`` rows of the size the writer stores (~250 bytes)."""
    with engine.begin() as conn:
        conn.execution_options(no_parameters=True).exec_driver_sql(
            "INSERT INTO telemetry_traces (event_key, severity, actor_admin_id, ip_address, user_agent, "
            "route_name, request_id, metadata, created_at) "
            "SELECT ELT(1 + seq % 5, 'http.request.start', 'http.request.end', 'auth.login.attempt', "
            "'db.query.slow', 'auth.logout'), ELT(1 + seq % 3, 'info', 'warning', 'error'), seq % 500, "
            "'10.0.0.7', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36', 'admins.list', "
            f"{request_id_sql(rows)}, "
            "CONCAT('{\"target_id\":', seq % 1000, ',\"reason\":\"password_reset_requested\"}'), "
            "TIMESTAMP('2026-11-01') + INTERVAL seq SECOND "
            f"FROM seq_1_to_{rows}")
        conn.exec_driver_sql("ANALYZE TABLE telemetry_traces")


def stats(samples: list[float]) -> tuple[float, float, float]:
    """Median, p99 and max, in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3, ordered[-1] * 1e3


def timed(call: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    count = call()
    return time.perf_counter() - started, count


def windows(engine: sa.Engine, raw: Any, rows: int) -> None:
    """Time-window lookups (no request id), 3 runs each: the optimizer's choice, not ours."""
    first = datetime(2026, 11, 1)  # build()'s first row; row N is N seconds later
    last = first + timedelta(seconds=rows)
    cases = {"window: the last hour but one": (last - timedelta(hours=2), last - timedelta(hours=1)),
             "window: one day, a day after the first row": (first + timedelta(days=1),
                                                            first + timedelta(days=2))}
    layout = table_layout(engine)
    print("\ntime windows, limit 50, 3 runs each, median ms (EXPLAIN key)")
    for label, (since, until) in cases.items():
        query = TraceQuery(since=since, until=until)
        sql, params = lookup_sql(layout, query)
        with engine.connect() as conn:
            plan = conn.execute(sa.text(f"EXPLAIN {sql}"), params).mappings().one()
        raw_sql = re.sub(r":(\w+)", r"%(\1)s", sql)
        ours_s, raw_s = [], []
        for _ in range(3):
            started = time.perf_counter()
            find_traces(engine, query)
            ours_s.append(time.perf_counter() - started)
            with raw.cursor() as cur:
                started = time.perf_counter()
                cur.execute(raw_sql, params)
                cur.fetchall()
                raw_s.append(time.perf_counter() - started)
        print(f"{label:44} ours {statistics.median(ours_s) * 1e3:9.1f}  raw "
              f"{statistics.median(raw_s) * 1e3:9.1f}  ({plan['key']}, {plan['type']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    if args.rows < 100 * PER_REQUEST or args.runs < 1 or not PER_REQUEST <= args.limit <= 1000:
        parser.error(f"--rows >= {100 * PER_REQUEST}, --runs >= 1, --limit from {PER_REQUEST} to 1000")

    with scratch_database() as (url, name):
        engine = create_engine(url, io_timeout=600)
        migrate.upgrade(engine)
        started = time.perf_counter()
        build(engine, args.rows)
        print(f"built {args.rows:,} rows in {time.perf_counter() - started:.1f} s; "
              f"{PER_REQUEST} rows a request id; target {TARGET} spread every "
              f"{args.rows // PER_REQUEST:,}th row")
        layout = table_layout(engine)
        clustered = "00000007-4b7e-4c2f-8d3a-1a2b3c4d5e6f"  # rows 700..799
        raw_sql = (f"SELECT {select_list(layout)} FROM telemetry_traces WHERE request_id = %s "
                   "ORDER BY id DESC LIMIT %s")
        raw = connect(name)

        def ours(query: TraceQuery) -> Callable[[], int]:
            return lambda: len(find_traces(engine, query).items)

        def baseline(request_id: str, limit: int, before: int | None = None) -> Callable[[], int]:
            sql = raw_sql if before is None else raw_sql.replace("ORDER BY", "AND id < %s ORDER BY")
            values = (request_id, limit) if before is None else (request_id, before, limit)

            def run() -> int:
                with raw.cursor() as cur:
                    cur.execute(sql, values)
                    return len(cur.fetchall())
            return run

        first = find_traces(engine, TraceQuery(request_id=TARGET, limit=50))
        assert len(first.items) == 50 and first.next_before_id is not None
        page = find_traces(engine, TraceQuery(request_id=TARGET, limit=args.limit))
        assert len(page.items) == PER_REQUEST and page.next_before_id is None, "not one page"
        assert {t.request_id for t in page.items} == {TARGET}
        cases = {
            f"target, spread, limit {args.limit}": (
                ours(TraceQuery(request_id=TARGET, limit=args.limit)),
                baseline(TARGET, args.limit + 1), PER_REQUEST),
            f"clustered, limit {args.limit}": (
                ours(TraceQuery(request_id=clustered, limit=args.limit)),
                baseline(clustered, args.limit + 1), PER_REQUEST),
            "target, 2nd page, limit 50": (
                ours(TraceQuery(request_id=TARGET, limit=50, before_id=first.next_before_id)),
                baseline(TARGET, 51, first.next_before_id), 50),
        }
        samples: dict[str, dict[str, list[float]]] = {c: {"ours": [], "raw": []} for c in cases}
        for run in range(args.runs + 5):  # the first 5 warm the buffer pool and the caches
            for case, (our_call, raw_call, expected) in cases.items():
                for side, call in (("ours", our_call), ("raw", raw_call))[:: 1 if run % 2 else -1]:
                    seconds, count = timed(call)
                    assert count == expected, (case, side, count)
                    if run >= 5:
                        samples[case][side].append(seconds)

        print(f"\n{args.runs} runs each, interleaved; milliseconds")
        print(f"{'lookup':32}{'ours median/p99/max':>24}{'raw median/p99/max':>24}{'ratio':>8}")
        for case, sides in samples.items():
            o, r = stats(sides["ours"]), stats(sides["raw"])
            print(f"{case:32}{o[0]:>8.3f}{o[1]:>8.3f}{o[2]:>8.3f}{r[0]:>8.3f}{r[1]:>8.3f}{r[2]:>8.3f}"
                  f"{o[0] / r[0]:>7.2f}x")

        sql, params = lookup_sql(layout, TraceQuery(request_id=TARGET, limit=args.limit))
        with engine.connect() as conn:
            plan = conn.execute(sa.text(f"EXPLAIN {sql}"), params).mappings().one()
            second, second_params = lookup_sql(layout, TraceQuery(request_id=TARGET, limit=50,
                                                                  before_id=first.next_before_id))
            plan2 = conn.execute(sa.text(f"EXPLAIN {second}"), second_params).mappings().one()
        with raw.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("EXPLAIN " + raw_sql, (TARGET, args.limit + 1))
            raw_plan = cur.fetchone()
        print(f"\nEXPLAIN ours: key={plan['key']} type={plan['type']} rows={plan['rows']} "
              f"extra={plan['Extra']!r}; 2nd page: key={plan2['key']} type={plan2['type']}")
        print(f"EXPLAIN raw:  key={raw_plan['key']} type={raw_plan['type']} rows={raw_plan['rows']} "
              f"extra={raw_plan['Extra']!r}")

        scan_sql = raw_sql.replace("WHERE", "IGNORE INDEX (idx_request) WHERE")
        scans = []
        for _ in range(3):
            with raw.cursor() as cur:
                started = time.perf_counter()
                cur.execute(scan_sql, (TARGET, args.limit + 1))
                cur.fetchall()
                scans.append(time.perf_counter() - started)
        print(f"for scale, the raw statement ignoring idx_request (a scan): "
              f"median {statistics.median(scans) * 1e3:,.0f} ms of 3")
        windows(engine, raw, args.rows)
        raw.close()
        engine.dispose()


if __name__ == "__main__":
    main()
