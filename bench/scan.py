"""Benchmark of the leak scan on a large table: rows/s scanned, next to reading alone, in one run.

    .venv/bin/python bench/scan.py [--rows 500000] [--secret-every 50] [--batch 2000]

Builds one layout-A table of ``--rows`` rows (MariaDB's ``seq_1_to_N`` engine) with the
metadata this service and PHP really store: ids, flags, email hashes, PHP-escaped paths and
non-ASCII text, and every ``--secret-every``-th row a planted secret (a password, a bearer
token, a clear email or a GitHub token, in turn). Then, on the same table:

1. **read**: ``trace_service.reader.iter_traces`` over every row (keyset batches, the same
   query the scan runs): the floor any scan of stored rows pays;
2. **scan**: ``jobs.leak_scan.run_scan`` with the shipped masking policy, checking that it
   found exactly the planted rows.

Prints both rates and their ratio. Issue 8 asks for rows/s on >= 500,000 rows; the read rate is
the baseline that says how much of the scan's time is the detectors.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.scratch_db import scratch_database
from governance.masking import Masker
from governance.masking_policy import load_masking_policy
from jobs.leak_scan import run_scan
from trace_service import migrate
from trace_service.db import create_engine
from trace_service.reader import iter_traces

# Clean metadata shapes (JSON text as stored), chosen by seq % 4; @N is the row number.
CLEAN = [
    "CONCAT('{\"target_id\":', seq, ',\"ok\":true,\"reason\":\"role_grant\"}')",
    "CONCAT('{\"email_hash\":\"', SHA2(seq, 256), '\",\"email_hash_key_id\":\"k1\","
    "\"email_hash_algo\":\"hmac-sha256\\\\/hkdf-v1\"}')",
    "CONCAT('{\"path\":\"\\\\/admin\\\\/users\\\\/', seq, "
    "'\",\"name\":\"Zo\\\\u00eb\",\"took_ms\":', seq % 997, '}')",
    "CONCAT('{\"correlation_id\":\"', MD5(seq), '\",\"step\":\"totp_verify\",\"mfa_enabled\":true}')",
]
# Planted secrets, chosen by (seq / secret_every) % 4.
SECRETS = [
    "CONCAT('{\"username\":\"u', seq, '\",\"password\":\"hunter', seq, '\"}')",
    "CONCAT('{\"message\":\"upstream said Authorization: Bearer abcdEFGH', seq, 'ijklmnop\"}')",
    "CONCAT('{\"contact\":\"user', seq, '@example.com\"}')",
    "CONCAT('{\"seen\":\"ghp_', LPAD(seq, 36, 'aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'), '\"}')",
]


def build(engine: sa.Engine, rows: int, every: int) -> None:
    """Fill telemetry_traces with ``rows`` rows, one planted secret every ``every`` rows."""
    clean = "CASE seq % 4 " + " ".join(f"WHEN {n} THEN {sql}" for n, sql in enumerate(CLEAN)) + " END"
    secret = f"CASE (seq DIV {every}) % 4 " + " ".join(
        f"WHEN {n} THEN {sql}" for n, sql in enumerate(SECRETS)) + " END"
    with engine.begin() as conn:
        conn.execution_options(no_parameters=True).exec_driver_sql(
            "INSERT INTO telemetry_traces (event_key, severity, actor_admin_id, ip_address, user_agent, "
            "route_name, request_id, metadata, created_at) "
            f"SELECT ELT(1 + seq % 3, 'auth.login.attempt', 'auth.logout', 'api.call'), 'info', seq % 50, "
            "'10.0.0.7', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36', 'admins.list', "
            "'3f2b8c4e-9d1a-4b7e-8c2f-1a2b3c4d5e6f', "
            f"IF(seq % {every} = 0, {secret}, {clean}), "
            "TIMESTAMP('2026-11-01') + INTERVAL seq SECOND "
            f"FROM seq_1_to_{rows}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--secret-every", type=int, default=50)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    if args.rows < 1 or args.secret_every < 1 or args.batch < 1:
        parser.error("--rows, --secret-every and --batch must be positive")

    with scratch_database() as (url, _name):
        engine = create_engine(url, io_timeout=600)
        migrate.upgrade(engine)
        started = time.perf_counter()
        build(engine, args.rows, args.secret_every)
        print(f"built {args.rows:,} rows in {time.perf_counter() - started:.1f} s "
              f"(a secret every {args.secret_every} rows: {args.rows // args.secret_every:,} planted)")

        started = time.perf_counter()
        read = sum(1 for _ in iter_traces(engine, batch_size=args.batch))
        read_s = time.perf_counter() - started

        started = time.perf_counter()
        result = run_scan(engine, Masker(load_masking_policy()), batch_size=args.batch, keep=0)
        scan_s = time.perf_counter() - started
        engine.dispose()

    tally = result.tally
    assert read == tally.rows == args.rows, (read, tally.rows)
    planted = args.rows // args.secret_every
    print(f"findings: {tally.findings:,} in {tally.rows_with_findings:,} rows "
          f"(planted {planted:,}; by kind {dict(tally.by_kind)})")
    if tally.rows_with_findings != planted:
        print("MISMATCH: the scan did not find exactly the planted rows", file=sys.stderr)
        sys.exit(1)
    read_rate, scan_rate = read / read_s, tally.rows / scan_s
    print(f"{'':8}{'rows':>10}{'seconds':>10}{'rows/s':>12}")
    print(f"{'read':8}{read:>10,}{read_s:>10.2f}{read_rate:>12,.0f}")
    print(f"{'scan':8}{tally.rows:>10,}{scan_s:>10.2f}{scan_rate:>12,.0f}")
    print(f"scan / read rows/s: {scan_rate / read_rate:.2f}x")


if __name__ == "__main__":
    main()
