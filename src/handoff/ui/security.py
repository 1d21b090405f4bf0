"""What keeps the dashboard's browser session safe: the secret, the sealed cookie, CSRF and the response headers.

The browser session is Litestar's client-side session (``CookieBackendConfig``: AES-GCM, so the cookie is both
encrypted and authenticated) and every state-changing request passes Litestar's ``CSRFMiddleware``; both keys
derive from one secret, from ``Settings.ui_secret`` or generated once into ``<data_dir>/ui-secret``, so every
worker of ``handoff serve --workers N`` reads the same one. The secret is resolved on the first request to
``/ui``, not when the app is built: an app that never serves the dashboard never touches the data directory.

Both cookies are ``HttpOnly`` and ``SameSite=Strict``, scoped to ``/ui``, and get ``Secure`` whenever the request
came over HTTPS (uvicorn reports the scheme, behind a proxy from ``X-Forwarded-Proto``): one configuration serves
a laptop on plain HTTP and a deployment behind TLS.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from litestar.config.csrf import CSRFConfig
from litestar.datastructures import MutableScopeHeaders
from litestar.middleware.csrf import CSRFMiddleware
from litestar.middleware.session import SessionMiddleware
from litestar.middleware.session.client_side import ClientSideSessionBackend, CookieBackendConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from handoff.config import Settings

logger = logging.getLogger("handoff.ui")

SECRET_FILE = "ui-secret"  # noqa: S105 - the name of the file, not a secret
SESSION_COOKIE = "handoff_ui"
CSRF_COOKIE = "handoff_ui_csrf"
COOKIE_PATH = "/ui"

#: Sent with every dashboard page: nothing but the service's own scripts, styles and images; no framing; the
#: pages (a workspace's data) are never cached or sent as a referrer to another origin. Lower-case like the blob
#: routes' headers, so that a blob served through the dashboard keeps its own (sandboxing) policy in their place.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def _kept_secret(path: Path) -> bytes:
    """The secret in ``path``, created first if missing; racing workers all end up reading the first one written."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(descriptor, secrets.token_hex(32).encode())
    finally:
        os.close(descriptor)
    try:
        os.link(draft, path)  # atomic and never overwrites: a worker that loses the race reads the winner's file
        logger.info("generated the dashboard secret in %s", path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_bytes().strip()


def ui_secret(settings: Settings) -> bytes:
    """The configured secret, else the one kept in the data directory."""
    if settings.ui_secret is not None:
        return settings.ui_secret.get_secret_value().encode()
    return _kept_secret(settings.data_dir / SECRET_FILE)


def derive(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose, so the session cipher and the CSRF signature never share a key."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


def session_config(secret: bytes, settings: Settings) -> CookieBackendConfig:
    return CookieBackendConfig(
        secret=derive(secret, "handoff-ui-session"),
        key=SESSION_COOKIE,
        path=COOKIE_PATH,
        max_age=max(1, int(settings.ui_session_hours * 3600)),
        httponly=True,
        samesite="strict",
    )


def csrf_config(secret: bytes) -> CSRFConfig:
    return CSRFConfig(
        secret=derive(secret, "handoff-ui-csrf").hex(),
        cookie_name=CSRF_COOKIE,
        cookie_path=COOKIE_PATH,
        cookie_httponly=True,  # the token travels in the forms' hidden field; no script needs the cookie
        cookie_samesite="strict",
    )


def _secure_when_https(scope: Scope, send: Send) -> Send:
    """``send`` that marks every cookie ``Secure`` when the request came over HTTPS."""
    if scope.get("scheme") != "https":
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableScopeHeaders.from_message(message)
            cookies = headers.getall("set-cookie", [])
            if cookies:
                del headers["set-cookie"]
                for cookie in cookies:
                    headers.add("set-cookie", cookie if "secure" in cookie.lower() else f"{cookie}; Secure")
        await send(message)

    return wrapped


class BrowserSessionMiddleware:
    """The dashboard's sealed session cookie and CSRF check, built around the route on its first request."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._stack: ASGIApp | None = None

    def _build(self) -> ASGIApp:
        secret = ui_secret(self.settings)
        protected = CSRFMiddleware(app=self.app, config=csrf_config(secret))
        return SessionMiddleware(app=protected, backend=ClientSideSessionBackend(session_config(secret, self.settings)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._stack is None:
            self._stack = self._build()
        await self._stack(scope, receive, _secure_when_https(scope, send))
