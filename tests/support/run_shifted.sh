#!/usr/bin/env bash
# Run pytest as if today were another day: Python and a throwaway MariaDB share one shifted clock.
#
#   tests/support/run_shifted.sh +40d tests/jobs tests/governance
#   tests/support/run_shifted.sh '@2027-12-31 23:59:30' tests/jobs
#
# The shift is libfaketime's (Debian: apt-get install -y faketime), of the wall clock only: with
# CLOCK_MONOTONIC shifted too, timed waits (threading.Event.wait, GET_LOCK's timeout) hang, as
# glibc's sem_clockwait is not intercepted. With it unshifted, libfaketime 0.9.10 fails
# clock_nanosleep on CLOCK_MONOTONIC with EINVAL, so Python's time.sleep is replaced (in the
# suite's Python processes only, by a sitecustomize on PYTHONPATH) with a monotonic timed wait.
# chromedriver dies (SIGTRAP) with libfaketime preloaded: tests/e2e/test_report_page.py cannot
# run shifted. An absolute '@date' becomes
# an offset from now, given to both processes, so the server started first is not ahead of the
# tests by its start-up time. The server gets its own datadir and port, and is stopped and deleted
# on exit. Python's venv is .venv unless PYTHON says otherwise. Arguments after the shift go to
# pytest as they are.
set -euo pipefail

shift_spec=${1:?usage: run_shifted.sh +40d|@YYYY-MM-DD HH:MM:SS [pytest args...]}
shift
python=${PYTHON:-.venv/bin/python}
port=${SHIFTED_PORT:-3310}

command -v faketime >/dev/null || { echo "faketime not found: apt-get install -y faketime" >&2; exit 2; }
if [[ $shift_spec == @* ]]; then
    offset="+$(( $(date -u -d "${shift_spec#@}" +%s) - $(date -u +%s) ))s"
else
    offset=$shift_spec
fi

datadir=$(mktemp -d /tmp/shifted-mariadb.XXXXXX)
cleanup() {
    # faketime runs mariadbd as its child: stop the server itself, by the pid it wrote.
    local pid
    pid=$(cat "$datadir/mysqld.pid" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        # mariadbd flushes and exits on SIGTERM; wait for it before deleting its files.
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -rf "$datadir"
}
trap cleanup EXIT

mariadb-install-db --no-defaults --datadir="$datadir/data" --user="$(id -un)" \
    --auth-root-authentication-method=normal >"$datadir/install.log" 2>&1 \
    || { cat "$datadir/install.log" >&2; exit 1; }
faketime --exclude-monotonic -f "$offset" /usr/sbin/mariadbd --no-defaults --datadir="$datadir/data" \
    --port="$port" --bind-address=127.0.0.1 --socket="$datadir/mysqld.sock" \
    --pid-file="$datadir/mysqld.pid" --user="$(id -un)" --skip-name-resolve \
    --log-error="$datadir/error.log" &
wrapper=$!
for _ in $(seq 120); do
    mariadb -uroot -S "$datadir/mysqld.sock" -e "SELECT 1" >/dev/null 2>&1 && break
    kill -0 "$wrapper" 2>/dev/null || { cat "$datadir/error.log" >&2; exit 1; }
    sleep 0.5
done
# The suite connects over TCP as root@127.0.0.1, as to the real server.
mariadb -uroot -S "$datadir/mysqld.sock" -e "CREATE USER IF NOT EXISTS root@'127.0.0.1';
    GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;"
echo "shifted by $offset: python $(faketime --exclude-monotonic -f "$offset" date -u '+%F %T'), server $(
    mariadb -uroot -h127.0.0.1 -P"$port" -N -e 'SELECT UTC_TIMESTAMP()')" >&2

mkdir "$datadir/site"
cat >"$datadir/site/sitecustomize.py" <<'PY'
import threading
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    threading.Event().wait(seconds)


time.sleep = _sleep
PY

status=0
TRACE_TEST_MARIADB_URL="mysql+pymysql://root@127.0.0.1:$port" \
    PYTHONPATH="$datadir/site${PYTHONPATH:+:$PYTHONPATH}" \
    faketime --exclude-monotonic -f "$offset" "$python" -m pytest -p no:cacheprovider "$@" || status=$?
exit $status
