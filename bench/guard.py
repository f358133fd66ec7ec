"""Benchmark of the audit_logs guard's cost per statement, against a no-op hook, in one run.

    .venv/bin/python bench/guard.py [--number 20000]

For each statement kind, the time of ``AuditGuard.before_cursor_execute`` next to a hook with
the same signature that does nothing (what SQLAlchemy's event dispatch costs anyway); the
difference is the guard's own overhead. Then one end-to-end figure: ``conn.exec_driver_sql``
of a small INSERT on an in-memory SQLite engine with and without the guard.

Target (issue 5): <= 2 us on statements that do not name a protected table.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from governance.audit_guard import AuditGuard, install
from governance.errors import AuditWriteForbidden
from trace_service.layout import LAYOUT_A
from trace_service.sink import insert_prefix, insert_sql
from trace_service.sql_literals import mysql_statements

ROW = ("auth.login.attempt", "info", 7, "10.0.0.1", "Mozilla/5.0", "admins.list",
       "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
       '{"target_id":3,"reason":"password_reset_requested","tags":["auth","stepup"]}',
       "2026-11-24 07:17:13.739142")
PREFIX = insert_prefix(LAYOUT_A)
STATEMENTS = {
    "telemetry INSERT, one row, parameters": insert_sql(LAYOUT_A, "format"),
    "telemetry INSERT, 500-row batch (the writer's)": mysql_statements(PREFIX, [ROW] * 500)[0],
    "telemetry SELECT": "SELECT id, event_key, severity, metadata, created_at FROM telemetry_traces "
                        "WHERE id > %(after)s ORDER BY id LIMIT %(limit)s",
    "names audit_logs: a read (parsed)": "SELECT COUNT(*) FROM audit_logs WHERE created_at > %s",
    "names audit_logs: a write (parsed, refused)": "INSERT INTO audit_logs (actor_id) VALUES (%s)",
}


def per_call_us(function: object, number: int) -> float:
    timer = timeit.Timer(function)  # type: ignore[arg-type]
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    logging.getLogger("governance.audit_guard").disabled = True  # one line per refusal otherwise
    guard = AuditGuard()

    def noop(conn: object, cursor: object, statement: str, parameters: object, context: object,
             executemany: bool) -> None:
        return None

    print(f"Python {sys.version.split()[0]}; best of 5 x {args.number} calls; microseconds per statement")
    print(f"  {'statement':48s} {'guard':>9s} {'no-op':>8s} {'overhead':>9s}")
    for label, statement in STATEMENTS.items():
        number = max(10, args.number // 100) if len(statement) > 10_000 else args.number

        def guarded(s: str = statement) -> None:
            try:  # noqa: SIM105 - contextlib.suppress would add its own cost to every timed call
                guard.before_cursor_execute(None, None, s, None, None, False)
            except AuditWriteForbidden:
                pass

        ours = per_call_us(guarded, number)
        base = per_call_us(lambda s=statement: noop(None, None, s, None, None, False), number)
        note = f"  ({(ours - base) / 500:.3f} per row)" if "batch" in label else ""
        print(f"  {label:48s} {ours:9.2f} {base:8.2f} {ours - base:9.2f}{note}")

    # End to end: any before_cursor_execute listener switches SQLAlchemy to its event-dispatch
    # path, so a no-op listener is measured too, to separate that cost from the guard's.
    plain, listened, guarded_engine = (sa.create_engine("sqlite://") for _ in range(3))
    sa.event.listen(listened, "before_cursor_execute", noop)
    install(guarded_engine)
    figures = []
    for engine in (plain, listened, guarded_engine):
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE t (a INTEGER, b TEXT)")
            figures.append(statistics.median(
                per_call_us(lambda c=conn: c.exec_driver_sql("INSERT INTO t VALUES (1, 'x')"),
                            args.number // 4) for _ in range(3)))
    print(f"\n  end to end, SQLite INSERT via exec_driver_sql: no listener {figures[0]:.2f} us, "
          f"no-op listener {figures[1]:.2f} us, guard {figures[2]:.2f} us")
    print(f"  the guard over a no-op listener: +{figures[2] - figures[1]:.2f} us "
          f"(SQLAlchemy's dispatch itself: +{figures[1] - figures[0]:.2f} us)")
    print("  target: overhead <= 2 us on statements that do not name a protected table")


if __name__ == "__main__":
    main()
