"""The HTTP service: the app factory and everything only it uses (ingest endpoint, API keys,
rate limits, OpenAPI document, Prometheus metrics, persisted counters, the reports view).

The library (the rest of :mod:`trace_service`) never imports this package; this package builds
on the library. Run it with ``flask --app trace_service`` or
``gunicorn 'trace_service.http.app:create_app()'``.
"""
