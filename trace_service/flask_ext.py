"""Flask extension that binds each request's id, ip, user agent and route into ``contextvars``.

``RequestContext().init_app(app)``: before each request it takes ``X-Request-ID`` the way the PHP
middleware does (see ``trace_service.context``), and after each response, error responses
included, it echoes the id in ``X-Request-ID``. Client ip and user agent follow PHP's fallbacks
(``0.0.0.0`` and ``unknown``); proxy headers are not read here (deployments behind a trusted proxy
wrap the app in Werkzeug's ``ProxyFix``).
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from trace_service import context

HEADER = "X-Request-ID"


class RequestContext:
    """Request-id correlation for a Flask app; created unbound, attached with ``init_app``."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the request hooks on ``app``."""
        app.before_request(self._bind)
        app.after_request(self._echo)
        app.teardown_request(self._unbind)
        app.extensions["trace_request_context"] = self

    @classmethod
    def hooks_alone(cls, app: Flask, blueprint: str) -> bool:
        """Whether the request hooks Flask runs for a view of ``blueprint`` are this
        extension's and no others (``trace_service.http.ingest_route`` answers such a view
        without Flask, doing what these hooks do)."""
        scopes = (None, blueprint)
        return (app.before_request_funcs.get(None) == [cls._bind]
                and app.after_request_funcs.get(None) == [cls._echo]
                and app.teardown_request_funcs.get(None) == [cls._unbind]
                and not app.before_request_funcs.get(blueprint)
                and not app.after_request_funcs.get(blueprint)
                and not app.teardown_request_funcs.get(blueprint)
                and not any(app.url_value_preprocessors.get(scope) for scope in scopes))

    @staticmethod
    def _bind() -> None:
        # The request and g looked up once each: every access through Flask's proxies costs a
        # context lookup, and this runs for every request (bench/ingest.py).
        req = request._get_current_object()  # type: ignore[attr-defined]
        headers = req.headers
        info = context.RequestInfo(
            request_id=context.request_id_from_header(headers.get(HEADER)),
            ip_address=req.remote_addr or "0.0.0.0",
            user_agent=headers.get("User-Agent") or "unknown",
            route_name=req.endpoint,
        )
        request_globals = g._get_current_object()
        request_globals.trace_context_token = context.bind(info)
        request_globals.request_id = info.request_id

    @staticmethod
    def _echo(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is None:
            # A failure before _bind ran (another before_request hook): still answer with an id.
            request_id = context.request_id_from_header(request.headers.get(HEADER))
            g.request_id = request_id
        response.headers[HEADER] = request_id
        return response

    @staticmethod
    def _unbind(_exc: BaseException | None) -> None:
        token = g.pop("trace_context_token", None)
        if token is not None:
            context.unbind(token)
