"""Viewer authentication: a view token presented once buys a signed cookie.

With ``--view-token`` set, the dashboard, its Bokeh websocket and the REST API
need either the signed, HttpOnly ``labscreen_view`` cookie, the token as
``?token=`` (which sets the cookie), or ``Authorization: Bearer TOKEN``. The
cookie holds a digest of the token, never the token, and the signing secret is
derived from the token, so cookies survive a server restart (a lab screen
reloads itself) and die when the token changes. Tokens are compared in
constant time. Viewers are read-only: no endpoint lets a viewer write.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
from typing import Any
from urllib.parse import urlparse

from bokeh.server.auth_provider import AuthProvider
from tornado.web import RequestHandler

log = logging.getLogger(__name__)

VIEW_COOKIE = "labscreen_view"
TOKEN_SETTING = "labscreen_view_token"
COOKIE_DAYS = 30


def derived_secret(token: str, purpose: str) -> bytes:
    """A secret for ``purpose`` derived from the view token (stable across restarts)."""
    return hmac.new(token.encode(), f"labscreen {purpose}".encode(), hashlib.sha256).hexdigest().encode()


def _digest(token: str) -> str:
    return hashlib.sha256(f"labscreen-viewer:{token}".encode()).hexdigest()


def _presented(handler: RequestHandler) -> str | None:
    scheme, _, value = (handler.request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = handler.get_query_argument("token", None)
    return token or None


def grant(handler: RequestHandler, token: str) -> None:
    """Give this browser the signed viewer cookie."""
    handler.set_signed_cookie(
        VIEW_COOKIE, _digest(token), expires_days=COOKIE_DAYS, httponly=True, samesite="Strict", path="/"
    )


def viewer_authorized(handler: RequestHandler, token: str | None) -> bool:
    """Whether the request may read; a valid presented token also sets the cookie.

    Never raises: a malformed cookie or header simply does not authorise.
    """
    if token is None:
        return True
    cookie = handler.get_signed_cookie(VIEW_COOKIE, max_age_days=COOKIE_DAYS)
    if cookie is not None and hmac.compare_digest(cookie, _digest(token).encode()):
        return True
    presented = _presented(handler)
    if presented is not None and hmac.compare_digest(presented.encode(), token.encode()):
        grant(handler, token)
        return True
    return False


class LoginHandler(RequestHandler):
    """``/login``: a one-field form; a right token sets the cookie and redirects."""

    def get(self) -> None:
        self._form(200, "")

    def post(self) -> None:
        token: str | None = self.settings.get(TOKEN_SETTING)
        presented = self.get_body_argument("token", "")
        if token is not None and hmac.compare_digest(presented.encode(), token.encode()):
            grant(self, token)
            self.redirect(_safe_next(self.get_query_argument("next", "/")))
            return
        log.warning("viewer login refused from %s", self.request.remote_ip)
        counter = self.settings.get("labscreen_metrics")
        if counter is not None:
            counter.errors["viewer_unauthorized"] += 1
        self._form(401, "That token is not right.")

    def _form(self, status: int, message: str) -> None:
        self.set_status(status)
        nxt = html.escape(_safe_next(self.get_query_argument("next", "/")), quote=True)
        self.finish(
            "<!doctype html><title>labscreen: sign in</title>"
            "<body style='font-family:sans-serif;max-width:28em;margin:4em auto'>"
            "<h1>labscreen</h1><p>This dashboard needs its view token.</p>"
            f"<p style='color:#b00'>{html.escape(message)}</p>"
            f"<form method='post' action='/login?next={nxt}'>"
            "<input name='token' type='password' autofocus size='30'> <button>View</button></form>"
        )


def _safe_next(target: str) -> str:
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


class ViewerAuth(AuthProvider):
    """Bokeh auth hook: the dashboard and its websocket need a viewer."""

    def __init__(self, token: str) -> None:
        self._token = token
        super().__init__()

    @property
    def get_user(self) -> Any:
        return self._user

    def _user(self, handler: RequestHandler) -> str | None:
        return "viewer" if viewer_authorized(handler, self._token) else None

    @property
    def login_url(self) -> str:
        return "/login"

    @property
    def login_handler(self) -> type[RequestHandler]:
        return LoginHandler
