"""The ingest POST answered straight from WSGI, Flask's view kept as the authority.

Flask's request cycle (a request and URL adapter built, app and request contexts pushed, routing,
hooks, signals, teardown) costs about 80 us a request on this project's machines, as much as all
of the endpoint's own work for a single trace (``bench/ingest.py``; a WSGI callable doing what the
bare Flask handler does took 6 us, the bare handler 88 us). :class:`IngestRoute` wraps the app's
``wsgi_app`` and answers ``POST /api/telemetry/traces`` itself by doing what Flask would do for
that one view, with the same functions:

- the request context bound as ``trace_service.flask_ext.RequestContext`` binds it (the
  ``X-Request-ID`` rule, the address, the user agent, the route name) and echoed in
  ``X-Request-ID``;
- the view's own work, :func:`~trace_service.http.ingest.answer_post`, with the address, the
  headers and the body read as Werkzeug reads them (``get_input_stream`` with the app's
  ``MAX_CONTENT_LENGTH``), and its answer made by
  :func:`~trace_service.http.ingest.answer_response`, as :func:`post_traces` makes it;
- anything raised handed to the app's own error handlers, inside a Flask request context.

Every other request goes to Flask (one with an ``Upgrade`` header too), and so does this one
whenever the app is set up in a way the route does not reproduce: debug mode, ``SERVER_NAME`` or
``TRUSTED_HOSTS`` (Flask may refuse the host), a secret key (sessions), another session
interface, request or response class, an app-context teardown, any request hook, URL
preprocessor or signal receiver other than ours, a method of Flask's request cycle patched or
overridden (an APM agent's, say), or a view that is no longer :func:`post_traces`.
``TRACE_INGEST_FAST_ROUTE=false`` turns the route off. ``tests/trace_service/http/
test_ingest_route.py`` checks that both answer every request the same, byte for byte, and store
the same rows.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from typing import Any

import flask
from flask import Flask, Response, g
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_input_stream

from trace_service import context
from trace_service.flask_ext import HEADER, RequestContext
from trace_service.http.ingest import ENDPOINT, PATH, PostedTraces, answer_post, answer_response, post_traces

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Flask's request-cycle signals: a receiver of any of them (Sentry's or another agent's) would
# miss the requests this route answers, so a receiver sends them all to Flask.
_SIGNALS = (flask.request_started, flask.request_finished, flask.request_tearing_down,
            flask.got_request_exception, flask.appcontext_pushed, flask.appcontext_popped,
            flask.appcontext_tearing_down)

# The methods of Flask's request cycle, as Flask defines them. An APM agent that patches one on
# the class (wrapt, as ddtrace and New Relic do) or an app class that overrides one expects every
# request to pass through it, so either sends the POST to Flask.
_CYCLE = tuple((name, getattr(Flask, name)) for name in (
    "wsgi_app", "request_context", "app_context", "create_url_adapter", "full_dispatch_request",
    "preprocess_request", "dispatch_request", "finalize_request", "make_response",
    "process_response", "do_teardown_request", "do_teardown_appcontext", "handle_user_exception",
    "handle_http_exception", "handle_exception"))
# Patched before this module was imported: never take the route in this process.
_CYCLE_IS_FLASKS = all(isinstance(method, types.FunctionType) and method.__module__ == "flask.app"
                       for _, method in _CYCLE)


class IngestRoute:
    """WSGI middleware: ``POST /api/telemetry/traces`` answered as Flask's view answers it,
    without Flask's request cycle; everything else passed to ``wsgi_app`` (Flask's)."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self._routed: bool | None = None  # whether Flask routes the POST to post_traces

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # An Upgrade header may make Werkzeug route the request as a WebSocket (no rule: 405).
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST" \
                or "HTTP_UPGRADE" in environ or not self.reproduces_flask():
            return self.wsgi_app(environ, start_response)
        if not self.app._got_first_request:
            # As Flask's cycle does: from now on, late setup (a route, a hook) raises.
            self.app._got_first_request = True
        info = context.RequestInfo(
            request_id=context.request_id_from_header(environ.get("HTTP_X_REQUEST_ID")),
            ip_address=environ.get("REMOTE_ADDR") or "0.0.0.0",
            user_agent=environ.get("HTTP_USER_AGENT") or "unknown",
            route_name=ENDPOINT,
        )
        token = context.bind(info)
        try:
            response = self._answer(environ, info)
        finally:
            context.unbind(token)
        response.headers[HEADER] = info.request_id
        return response(environ, start_response)

    def _answer(self, environ: dict[str, Any], info: context.RequestInfo) -> Response:
        app = self.app
        posted = PostedTraces(
            environ.get("REMOTE_ADDR") or "", environ.get("HTTP_AUTHORIZATION", ""),
            environ.get("CONTENT_TYPE"), environ.get("HTTP_CONTENT_ENCODING"),
            lambda: get_input_stream(
                environ, max_content_length=app.config["MAX_CONTENT_LENGTH"]).read())
        try:
            return answer_response(app, answer_post(app.extensions, posted))
        except Exception as exc:  # what Flask does with it: the app's error handlers decide
            return self._handled(environ, info, exc)

    def _handled(self, environ: dict[str, Any], info: context.RequestInfo,
                 exc: Exception) -> Response:
        """The app's answer to ``exc`` as Flask's request cycle would give it (the body too
        large, a client gone while sending it, a bug), with ``g`` as the hooks leave it."""
        app = self.app
        with app.request_context(environ):
            g.request_id = info.request_id
            try:
                return app.make_response(app.handle_user_exception(exc))
            except Exception as unhandled:
                return app.handle_exception(unhandled)

    def reproduces_flask(self) -> bool:
        """Whether the app is set up so that this route answers as Flask would (module
        docstring). Checked on every request, since hooks, receivers and patches may come
        after the app is built; the routing once, since Flask adds no rule once it serves."""
        app = self.app
        if app.debug or app.config["SERVER_NAME"] or app.config.get("TRUSTED_HOSTS") \
                or app.url_map.host_matching:
            return False
        # Sessions (a cookie refreshed on each request), other request or response classes,
        # app-context teardowns: all things Flask's cycle does that this route does not.
        if app.secret_key or type(app.session_interface) is not SecureCookieSessionInterface \
                or app.request_class is not flask.Request or app.response_class is not Response \
                or app.teardown_appcontext_funcs:
            return False
        if not RequestContext.hooks_alone(app, ENDPOINT.partition(".")[0]) \
                or app.view_functions.get(ENDPOINT) is not post_traces:
            return False
        cls = type(app)
        if not _CYCLE_IS_FLASKS or any(getattr(cls, name) is not method for name, method in _CYCLE):
            return False
        try:
            # receivers_for, not has_receivers_for: blinker's quick test still says yes once the
            # app's last receiver is disconnected.
            if any(signal.receivers and next(iter(signal.receivers_for(app)), None) is not None
                   for signal in _SIGNALS):
                return False
        except RuntimeError:  # a receiver connected by another thread meanwhile
            return False
        if self._routed is None:
            self._routed = _routed_to(app, ENDPOINT)
        return self._routed


def _routed_to(app: Flask, endpoint: str) -> bool:
    """Whether Flask's URL map sends ``POST`` :data:`PATH` to ``endpoint``."""
    try:
        matched, _ = app.url_map.bind("localhost").match(PATH, method="POST")
    except HTTPException:
        return False
    return bool(matched == endpoint)
