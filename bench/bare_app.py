"""The baseline for bench/ingest.py: a bare Flask POST handler (parse JSON, answer 202)."""

from flask import Flask, request

app = Flask(__name__)


@app.post("/api/telemetry/traces")
def post() -> tuple[dict[str, object], int]:
    """Parse the body and answer, as the cheapest possible ingest endpoint would."""
    payload = request.get_json(force=True)
    return {"accepted": len(payload) if isinstance(payload, list) else 1}, 202
