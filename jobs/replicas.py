"""Replica lag, for pausing maintenance while replicas fall behind (pt-archiver ``--max-lag``).

:class:`ReplicaLag` asks each configured replica ``SHOW REPLICA STATUS`` (``SHOW SLAVE STATUS``
on servers older than MariaDB 10.5 / MySQL 8.0.22) and returns the worst
``Seconds_Behind_Master``/``_Source``. A replica whose SQL thread is stopped reports NULL: that
counts as infinitely behind, so maintenance waits rather than racing ahead of a broken replica.
A server that is not a replica at all is a configuration mistake and raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from governance.errors import ConfigError
from trace_service.db import create_engine

_LAG_COLUMNS = ("Seconds_Behind_Master", "Seconds_Behind_Source")


def replica_lag(engine: Engine) -> float:
    """Seconds this replica is behind; ``inf`` when replication is stopped."""
    with engine.connect() as conn:
        try:
            rows = conn.execute(sa.text("SHOW REPLICA STATUS")).mappings().all()
        except sa.exc.ProgrammingError:
            rows = conn.execute(sa.text("SHOW SLAVE STATUS")).mappings().all()
    if not rows:
        raise ConfigError(
            f"{engine.url.render_as_string(hide_password=True)} is not a replica (SHOW REPLICA "
            "STATUS is empty): remove it from [replicas] urls in the retention policy")
    worst = 0.0
    for row in rows:  # MariaDB multi-source replication: one row per connection
        value = next((row[c] for c in _LAG_COLUMNS if c in row), None)
        worst = max(worst, math.inf if value is None else float(value))
    return worst


class ReplicaLag:
    """A callable probe over several replicas: the worst lag among them."""

    def __init__(self, urls: Iterable[str]) -> None:
        self.engines = [create_engine(url, pool_size=1) for url in urls]

    def __call__(self) -> float:
        return max((replica_lag(engine) for engine in self.engines), default=0.0)

    def close(self) -> None:
        """Close the replicas' connections."""
        for engine in self.engines:
            engine.dispose()
