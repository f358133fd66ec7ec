"""The PHP application's own DDL for telemetry_traces (``docs/php-compat.md`` §1), for tests
that need a table we did not create."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

LAYOUT_B_MYSQL = """
CREATE TABLE telemetry_traces (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  event_key VARCHAR(255) NOT NULL,
  severity ENUM('info','warning','error','critical') NOT NULL DEFAULT 'info',
  actor_type VARCHAR(32) NOT NULL,
  actor_id BIGINT NULL,
  correlation_id CHAR(36) NULL,
  request_id VARCHAR(64) NULL,
  route_name VARCHAR(255) NULL,
  ip_address VARCHAR(45) NULL,
  user_agent TEXT NULL,
  metadata JSON NULL,
  occurred_at DATETIME(6) NOT NULL,
  INDEX idx_actor (actor_type, actor_id),
  INDEX idx_event_key (event_key),
  INDEX idx_severity (severity),
  INDEX idx_correlation (correlation_id),
  INDEX idx_request (request_id),
  INDEX idx_route (route_name),
  INDEX idx_occurred_at (occurred_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""

LAYOUT_B0_MYSQL = """
CREATE TABLE telemetry_traces (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  event_key VARCHAR(255) NOT NULL,
  severity VARCHAR(16) NOT NULL DEFAULT 'info',
  actor_admin_id INT NULL,
  request_id VARCHAR(64) NULL,
  route_name VARCHAR(255) NULL,
  ip_address VARCHAR(45) NULL,
  user_agent TEXT NULL,
  metadata JSON NULL,
  occurred_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""

# The PHP migration of the governance layout A, as a DBA would have run it by hand.
LAYOUT_A_MYSQL = """
CREATE TABLE telemetry_traces (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  event_key VARCHAR(255) NOT NULL,
  severity VARCHAR(20) NOT NULL DEFAULT 'info',
  actor_admin_id INT NULL,
  ip_address VARCHAR(45) NULL,
  user_agent VARCHAR(255) NULL,
  route_name VARCHAR(255) NULL,
  request_id VARCHAR(64) NULL,
  metadata JSON NULL,
  created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  INDEX idx_created_at (created_at),
  INDEX idx_event_key (event_key),
  INDEX idx_actor (actor_admin_id),
  INDEX idx_request (request_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""

LAYOUT_B_SQLITE = """
CREATE TABLE telemetry_traces (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_key VARCHAR(255) NOT NULL,
  severity VARCHAR(16) NOT NULL DEFAULT 'info'
    CHECK (severity IN ('info','warning','error','critical')),
  actor_type VARCHAR(32) NOT NULL,
  actor_id BIGINT NULL,
  correlation_id CHAR(36) NULL,
  request_id VARCHAR(64) NULL,
  route_name VARCHAR(255) NULL,
  ip_address VARCHAR(45) NULL,
  user_agent TEXT NULL,
  metadata TEXT NULL,
  occurred_at DATETIME NOT NULL
)
"""

LAYOUT_B0_SQLITE = """
CREATE TABLE telemetry_traces (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_key VARCHAR(255) NOT NULL,
  severity VARCHAR(16) NOT NULL DEFAULT 'info',
  actor_admin_id INT NULL,
  request_id VARCHAR(64) NULL,
  route_name VARCHAR(255) NULL,
  ip_address VARCHAR(45) NULL,
  user_agent TEXT NULL,
  metadata TEXT NULL,
  occurred_at DATETIME NOT NULL
)
"""

DDL = {
    ("A", "mysql"): LAYOUT_A_MYSQL,
    ("B", "mysql"): LAYOUT_B_MYSQL,
    ("B0", "mysql"): LAYOUT_B0_MYSQL,
    ("B", "sqlite"): LAYOUT_B_SQLITE,
    ("B0", "sqlite"): LAYOUT_B0_SQLITE,
}


def create_php_table(engine: Engine, layout: str) -> None:
    """Create telemetry_traces as the PHP side would have, in ``layout`` (A, B or B0)."""
    backend = "sqlite" if engine.dialect.name == "sqlite" else "mysql"
    with engine.begin() as conn:
        conn.exec_driver_sql(DDL[(layout, backend)])


def php_insert(engine: Engine, layout: str, **values: object) -> None:
    """Insert one row the way PDO with emulated prepares would (every value a quoted string)."""
    columns = ", ".join(values)
    markers = ", ".join(f":{name}" for name in values)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO telemetry_traces ({columns}) VALUES ({markers})"),
            {k: (None if v is None else str(v)) for k, v in values.items()},
        )
