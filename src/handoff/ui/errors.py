"""Errors on the dashboard: the API's classification, shown as a page.

The status, title and detail come from :func:`handoff.errors.handle_exception`, the one place that classifies
errors (and logs the unexpected ones), so a session of another workspace is the same 404 here as on ``/v1``.
Only an ``Unauthorized`` differs: it means "sign in", and sends the browser to the form.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.response import Template

from handoff.errors import Unauthorized, handle_exception
from handoff.ui.auth import sign_in_redirect
from handoff.ui.render import page

#: Headers of a problem that still mean something on a page.
_KEPT_HEADERS = ("Retry-After", "X-Request-Id")


def ui_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any] | Template:
    """The error page, or the sign-in form for a missing, expired or revoked key."""
    if isinstance(exc, Unauthorized):
        return sign_in_redirect(request, "Your key no longer opens this workspace, or the sign-in expired.")
    problem = handle_exception(request, exc)
    rendered = page(request, "error.html.j2", status_code=problem.status_code or 500, problem=problem.content)
    rendered.headers.update({name: problem.headers[name] for name in _KEPT_HEADERS if name in problem.headers})
    return rendered
