"""A bounded HTTP load on the ingest endpoint, run as its own process by the reliability tests.

    python -m tests.support.load_client PORT KEY SECONDS THREADS OUT.json

Each thread keeps one HTTP/1.1 connection and POSTs single traces as fast as answers come, for
SECONDS. Every trace carries a unique ``metadata.n`` so the test can match what was stored with
what was accepted. OUT.json gets: answers by status, 503s without ``Retry-After``, connection
errors, and the ``n`` of every trace answered ``accepted``.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import uuid
from collections import Counter


def run(port: int, key: str, seconds: float, threads: int) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    accepted: list[str] = []
    problems: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[str] = []
        seen: Counter[int] = Counter()
        trouble: Counter[str] = Counter()
        while time.monotonic() < deadline:
            n = uuid.uuid4().hex
            body = json.dumps({"event_key": "reliability.load", "severity": "info", "metadata": {"n": n}})
            try:
                conn.request("POST", "/api/telemetry/traces", body=body, headers={
                    "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                trouble[f"connection: {type(exc).__name__}"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            seen[response.status] += 1
            if response.status == 503 and not response.getheader("Retry-After"):
                trouble["503 without Retry-After"] += 1
            if response.status == 202 and json.loads(payload).get("status") == "accepted":
                mine.append(n)
        conn.close()
        with lock:
            statuses.update(seen)
            accepted.extend(mine)
            problems.update(trouble)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {"statuses": {str(k): v for k, v in statuses.items()}, "problems": dict(problems),
            "accepted": accepted}


if __name__ == "__main__":
    port, key, seconds, threads, out = sys.argv[1:6]
    result = run(int(port), key, float(seconds), int(threads))
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
