"""The fault-injecting proxy itself: each fault does what the other tests rely on."""

from __future__ import annotations

import time

import pymysql
import pytest

from tests.reliability.conftest import Behind, wait_for

pytestmark = pytest.mark.timeout(60)


def _connect(behind: Behind, timeout: float = 2.0) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=behind.proxy.port, user="root", database=behind.database,
                           connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)


def _ping(conn: pymysql.Connection) -> int:
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        return int(cursor.fetchone()[0])


def test_forward_then_delay_then_restore(behind: Behind) -> None:
    conn = _connect(behind)
    assert _ping(conn) == 1 and behind.proxy.connections == 1
    behind.proxy.delay(0.3)
    started = time.monotonic()
    assert _ping(conn) == 1
    assert time.monotonic() - started >= 0.6  # held back both ways
    behind.proxy.restore()
    conn.close()
    assert wait_for(lambda: behind.proxy.connections == 0, 5)


def test_blackhole_times_out_and_restore_serves_new_connections(behind: Behind) -> None:
    conn = _connect(behind, timeout=0.5)
    behind.proxy.blackhole()
    with pytest.raises(pymysql.err.OperationalError):
        _ping(conn)
    behind.proxy.restore()
    assert _ping(_connect(behind)) == 1


@pytest.mark.parametrize("fault", ["reset", "cut"])
def test_reset_and_cut_break_open_connections(behind: Behind, fault: str) -> None:
    conn = _connect(behind)
    getattr(behind.proxy, fault)()
    with pytest.raises(pymysql.err.OperationalError):
        _ping(conn)
    if fault == "reset":
        assert _ping(_connect(behind)) == 1  # new connections pass
    else:
        with pytest.raises(pymysql.err.OperationalError):
            _connect(behind)
        behind.proxy.restore()
        assert _ping(_connect(behind)) == 1


def test_refuse_closes_the_port_and_restore_reopens_it(behind: Behind) -> None:
    behind.proxy.refuse()
    with pytest.raises(pymysql.err.OperationalError) as caught:
        _connect(behind)
    assert "Connection refused" in str(caught.value) or "111" in str(caught.value)
    behind.proxy.restore()
    assert _ping(_connect(behind)) == 1
