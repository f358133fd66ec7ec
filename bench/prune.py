"""Benchmark of pruning against Percona's pt-archiver, and of dropping daily partitions, in one run.

    .venv/bin/python bench/prune.py [--rows 1000000] [--days 60] [--ours-first]

Builds one layout-A table of ``--rows`` rows spread evenly over ``--days`` days, then on
identical copies, each made just before its run:

1. ``pt-archiver --purge --bulk-delete --limit 1000 --commit-each`` (Debian ``percona-toolkit``)
   deletes the rows older than 30 days;
2. ``jobs.pruning.Pruner`` with the shipped policy (adaptive batches, 50 ms budget, no pause:
   pt-archiver runs without ``--sleep`` too) deletes the same rows;
3. the third copy is partitioned by day (``jobs.partitions.convert_plan``, timed: that gives the
   copy rate `convert` quotes) and the retention plan drops the 30 expired daily partitions.

Targets (issue 7): rows/s >= 1.0x pt-archiver's with our p99 single-batch duration <= 100 ms;
30 daily partitions dropped in <= 1 s.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.scratch_db import scratch_database
from jobs import ddl
from jobs.cutoff import format_wall, retention_cutoff
from jobs.partitions import convert_plan, plan_partitions
from jobs.pruning import Pruner, plan_prune
from jobs.retention_policy import load_retention_policy
from trace_service import migrate
from trace_service.db import create_engine, table_layout

# ~250 bytes of row, like the writer's: a route, an agent, a request id, small metadata.
FILL = """
INSERT INTO telemetry_traces (event_key, severity, actor_admin_id, ip_address, user_agent,
  route_name, request_id, metadata, created_at)
SELECT CONCAT('auth.login.', ELT(1 + seq % 4, 'attempt', 'success', 'failure', 'stepup')),
  ELT(1 + seq % 3, 'info', 'warning', 'error'), seq % 500, '10.0.0.1',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36', 'admins.list', UUID(),
  CONCAT('{"target_id":', seq % 1000, ',"reason":"password_reset_requested","tags":["auth"]}'),
  :start + INTERVAL (seq * :span DIV :rows) SECOND
FROM seq_1_to_{rows}
"""


def build(url: str, rows: int, days: int, now: datetime) -> None:
    engine = create_engine(url, io_timeout=3600)
    migrate.upgrade(engine)
    start = (now - timedelta(days=days)).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(sa.text(FILL.replace("{rows}", str(rows))),
                     {"start": start, "span": days * 86400, "rows": rows})
    engine.dispose()


def copy(source: str, url: str) -> None:
    engine = create_engine(url, io_timeout=3600)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO telemetry_traces SELECT * FROM {source}.telemetry_traces"))
    engine.dispose()


def settle(url: str, timeout: float = 180.0) -> float:
    """Wait until InnoDB has flushed its dirty pages and purged old row versions.

    The build, the copies and the other tool's deletes leave background I/O behind; whichever
    run starts under it is slowed, so each run starts from a settled server."""
    engine = create_engine(url)
    began = time.perf_counter()
    previous = -1
    with engine.connect() as conn:
        while time.perf_counter() - began < timeout:
            dirty = int(conn.execute(sa.text(
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                "WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")).scalar() or 0)
            history = int(conn.execute(sa.text(
                "SELECT COUNT FROM information_schema.INNODB_METRICS "
                "WHERE NAME = 'trx_rseg_history_len'")).scalar() or 0)
            conn.commit()
            # Idle InnoDB keeps some dirty pages; settled is: purge done, flushing at rest.
            if history < 1000 and previous >= 0 and dirty >= previous * 0.98:
                break
            previous = dirty
            time.sleep(1.0)
    engine.dispose()
    return time.perf_counter() - began


def run_pt_archiver(name: str, cutoff: str, limit: int) -> tuple[int, float, str]:
    command = [
        "pt-archiver", "--source", f"h=127.0.0.1,u=root,D={name},t=telemetry_traces,A=utf8mb4",
        "--where", f"created_at < '{cutoff}'", "--purge", "--bulk-delete", "--limit", str(limit),
        "--commit-each", "--statistics",
    ]
    began = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
    elapsed = time.perf_counter() - began
    deleted = int(re.search(r"DELETE\s+(\d+)", result.stdout).group(1))  # type: ignore[union-attr]
    return deleted, elapsed, result.stdout


def run_ours(url: str, cutoff: datetime) -> dict[str, object]:
    engine = create_engine(url, io_timeout=3600)
    policy = load_retention_policy()
    plan = plan_prune(engine, table_layout(engine), cutoff, policy.prune.batch_size)
    stats = Pruner(engine, policy.prune).run(plan)
    engine.dispose()
    return stats.summary()


def run_partitions(url: str, now: datetime, days: int, rows: int) -> tuple[float, float, int]:
    engine = create_engine(url, io_timeout=3600)
    layout = table_layout(engine)
    policy = load_retention_policy()
    today = now.date()
    # Daily partitions over the whole table (a cut-off before the oldest row).
    plan = convert_plan(layout.time_column, rows, today - timedelta(days=days + 1), today,
                        datetime.combine(today - timedelta(days=days + 1), datetime.min.time()),
                        policy.partitions.days_ahead, 1.0)
    began = time.perf_counter()
    ddl.run_ddl(engine, plan.sql, policy.partitions)
    convert_seconds = time.perf_counter() - began
    parts = ddl.read_partitions(engine, layout)
    assert parts is not None
    cutoff = retention_cutoff(now, policy.days, "UTC")
    retention = plan_partitions(parts, today, cutoff, policy.partitions.days_ahead,
                                ddl.read_catch_all(engine, layout))
    (drop,) = [op for op in retention.operations if op.kind == "drop"]
    began = time.perf_counter()
    ddl.run_ddl(engine, drop.sql, policy.partitions)
    drop_seconds = time.perf_counter() - began
    engine.dispose()
    return convert_seconds, drop_seconds, len(drop.dropped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--limit", type=int, default=1000, help="pt-archiver --limit")
    parser.add_argument("--ours-first", action="store_true", help="run ours before pt-archiver")
    args = parser.parse_args()
    if shutil.which("pt-archiver") is None:
        sys.exit("pt-archiver is missing: apt-get install percona-toolkit")
    now = datetime.now(UTC).replace(microsecond=0)
    cutoff = retention_cutoff(now, 30, "UTC")
    with scratch_database() as (url_src, name_src), scratch_database() as (url_ours, _), \
            scratch_database() as (url_pt, name_pt), scratch_database() as (url_part, _):
        began = time.perf_counter()
        build(url_src, args.rows, args.days, now)
        print(f"built {args.rows} rows over {args.days} days in {time.perf_counter() - began:.0f} s;"
              f" cut-off {format_wall(cutoff)}")
        # Each copy is made just before its run and the server left to settle, so each run
        # starts with the same share of its table in the buffer pool (a 1M-row copy is larger
        # than MariaDB's default pool) and no background flushing or purge.
        if args.ours_first:
            copy(name_src, url_ours)
            settle(url_ours)
            ours = run_ours(url_ours, cutoff)
        copy(name_src, url_pt)
        settle(url_pt)
        pt_deleted, pt_seconds, pt_stats = run_pt_archiver(name_pt, format_wall(cutoff), args.limit)
        pt_rate = pt_deleted / pt_seconds
        pt_batches = -(-pt_deleted // args.limit)
        if not args.ours_first:
            copy(name_src, url_ours)
            settle(url_ours)
            ours = run_ours(url_ours, cutoff)
        copy(name_src, url_part)
        settle(url_part)
        convert_seconds, drop_seconds, dropped = run_partitions(url_part, now, args.days, args.rows)

    our_rate = float(ours["rows_per_second"])  # type: ignore[arg-type]
    print(f"\n{'':44}{'ours':>12}{'pt-archiver':>14}{'ratio':>8}")
    print(f"{'rows deleted':44}{ours['rows_deleted']:>12}{pt_deleted:>14}")
    print(f"{'rows/s':44}{our_rate:>12.0f}{pt_rate:>14.0f}{our_rate / pt_rate:>7.2f}x")
    print(f"{'seconds':44}{ours['elapsed_seconds']:>12}{pt_seconds:>14.1f}")
    print(f"{'batches':44}{ours['batches']:>12}{pt_batches:>14}")
    print(f"{'batch size (ours adapts; pt --limit)':44}"
          f"{str(ours['batch_size_min']) + '-' + str(ours['batch_size_max']):>12}{args.limit:>14}")
    print(f"{'single batch ms, p50 / p99 / max (ours)':44}"
          f"{ours['batch_ms_p50']} / {ours['batch_ms_p99']} / {ours['batch_ms_max']}")
    print(f"{'single batch ms, mean (pt-archiver)':44}{'':>12}{pt_seconds * 1000 / pt_batches:>14.1f}")
    print(f"\ntarget: rows/s >= 1.0x pt-archiver, p99 batch <= 100 ms: "
          f"{our_rate / pt_rate:.2f}x, {ours['batch_ms_p99']} ms")
    print(f"partitioning {args.rows} rows (ALTER, copy): {convert_seconds:.1f} s = "
          f"{args.rows / convert_seconds:.0f} rows/s")
    print(f"dropping {dropped} daily partitions: {drop_seconds * 1000:.0f} ms (target <= 1000 ms)")
    print("\npt-archiver --statistics:\n" + pt_stats.strip())


if __name__ == "__main__":
    main()
