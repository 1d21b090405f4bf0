"""Signing in to the dashboard with an API key, staying signed in, and signing out.

The key is posted once, in a form (never a URL), resolved by the same code as the ``/v1`` guard
(:func:`handoff.auth.resolve_key`), and forgotten: the browser session keeps only the key's hash and an expiry
time, sealed in the cookie. Every page re-resolves that hash through the guard's key cache
(:func:`handoff.auth.resolve_key_hash`), so a revoked or expired key signs the browser out within the cache's
window (at most 5 s), exactly as it stops working on the API.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_401_UNAUTHORIZED

from handoff import clock
from handoff.auth import resolve_key, resolve_key_hash
from handoff.config import Settings
from handoff.errors import Unauthorized
from handoff.ui.render import FLASH, browser_session, flash, page
from handoff.workspaces import service as workspaces

KEY_HASH = "key_sha256"
EXPIRES = "expires"
#: Where the browser was going when it was asked to sign in (a path of the dashboard, kept in the session).
RETURN_TO = "return_to"
HOME = "/ui/sessions"
SIGN_IN = "/ui/sign-in"
#: Longer than any key this service issues ("hk_" + 43 characters); a longer paste is not worth hashing.
MAX_KEY_CHARS = 200


def signed_in_key(connection: ASGIConnection[Any, Any, Any, Any]) -> tuple[str, float]:
    """The hash of the browser session's key and when the sign-in expires, while it has not (``Unauthorized``
    otherwise)."""
    data = connection.scope.get("session")
    data = data if isinstance(data, dict) else {}
    key_hash, expires = data.get(KEY_HASH), data.get(EXPIRES)
    if not isinstance(key_hash, str) or not isinstance(expires, int | float):
        raise Unauthorized("sign in with an API key")
    if expires <= clock.now().timestamp():
        raise Unauthorized("the sign-in has expired")
    return key_hash, float(expires)


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: a browser session that has not expired, whose key still opens its workspace."""
    connection.state.principal = await resolve_key_hash(connection, signed_in_key(connection)[0])


def sign_in_redirect(request: Request[Any, Any, Any], reason: str) -> Redirect:
    """Forget the browser session and send the browser to the sign-in form, remembering where it was going."""
    previous = browser_session(request) or {}
    request.clear_session()
    if request.method == "GET" and request.url.path != SIGN_IN:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        request.set_session({RETURN_TO: target})
    if previous.get(KEY_HASH):
        flash(request, reason)
    elif previous.get(FLASH):  # a message not shown yet ("You are signed out.") survives the detour
        flash(request, previous[FLASH])
    redirect = Redirect(SIGN_IN, status_code=303)
    if request.headers.get("hx-request"):
        redirect.headers["HX-Redirect"] = SIGN_IN  # htmx follows a 303 inside its swap; this makes it a navigation
    return redirect


class SignInController(Controller):
    """The sign-in form and sign-out (outside the ``signed_in`` guard)."""

    path = "/"
    include_in_schema = False

    @get("/sign-in")
    async def form(self, request: Request[Any, Any, Any]) -> Template:
        """The sign-in form."""
        return page(request, "sign_in.html.j2", error=None)

    @post("/sign-in")
    async def sign_in(self, request: Request[Any, Any, Any]) -> Template | Redirect:
        """Resolve the posted key like the API does; keep its hash and an expiry in the sealed session cookie."""
        form = await request.form()
        key = str(form.get("key") or "").strip()
        try:
            if not key or len(key) > MAX_KEY_CHARS:
                raise Unauthorized("a valid API key is required")
            await resolve_key(request, key)
        except Unauthorized:
            error = "That key does not open a workspace: it is unknown, revoked or expired."
            return page(request, "sign_in.html.j2", status_code=HTTP_401_UNAUTHORIZED, error=error)
        settings: Settings = request.app.state.settings
        target = (browser_session(request) or {}).get(RETURN_TO)
        request.set_session(
            {
                KEY_HASH: workspaces.hash_key(key),
                EXPIRES: int(clock.now().timestamp() + settings.ui_session_hours * 3600),
            }
        )
        if not (isinstance(target, str) and target.startswith("/ui/")):
            target = HOME  # only a path of the dashboard itself: a return address never leads off the service
        return Redirect(target, status_code=303)

    @post("/sign-out")
    async def sign_out(self, request: Request[Any, Any, Any]) -> Redirect:
        """Forget the browser session."""
        request.clear_session()
        flash(request, "You are signed out.")
        return Redirect(SIGN_IN, status_code=303)
