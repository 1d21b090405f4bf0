"""The web dashboard, served by the service itself at ``/ui``: server-rendered pages over the domain services.

Pages are Jinja templates rendered by Litestar; the scripts are htmx and its SSE extension (vendored in
``static/``, with their licenses), which make the filter forms update in place and the live parts (``live``)
swap in, and ``live.js`` for the lease countdowns; every page works without them, only not live.
Signing in takes an API key (``auth``), and the browser session is a sealed cookie with CSRF protection
(``security``). Handlers are thin (``sessions``, ``insights``): they call the same functions as the REST routes.

    app = Litestar(route_handlers=[*ui.routers(settings)], template_config=ui.template_config())
"""

from __future__ import annotations

from litestar import Router, get
from litestar.datastructures import ResponseHeader
from litestar.datastructures.headers import CacheControlHeader
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler
from litestar.middleware.base import DefineMiddleware
from litestar.params import FromPath
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from handoff.auth import provide_principal
from handoff.config import Settings
from handoff.errors import NotFound
from handoff.ui.auth import HOME, SignInController
from handoff.ui.errors import ui_exception_handler
from handoff.ui.insights import InsightPages
from handoff.ui.live import LiveStreams
from handoff.ui.render import STATIC_DIR, template_config
from handoff.ui.security import SECURITY_HEADERS, BrowserSessionMiddleware
from handoff.ui.sessions import SessionPages

__all__ = ["routers", "template_config"]


@get(["/"], include_in_schema=False)
async def home() -> Redirect:
    """``/ui`` opens the Sessions page."""
    return Redirect(HOME, status_code=303)


@get(["/{path:path}"], include_in_schema=False)
async def unknown(path: FromPath[str]) -> None:
    """Any other address under ``/ui`` is the dashboard's own 404 page."""
    raise NotFound(f"there is no page at /ui{path}")


def routers(settings: Settings) -> list[Router | HTTPRouteHandler]:
    """The dashboard's pages (behind the browser session) and its static files (public, cached)."""
    pages = Router(
        path="/ui",
        route_handlers=[home, SignInController, SessionPages, InsightPages, LiveStreams, unknown],
        middleware=[DefineMiddleware(BrowserSessionMiddleware, settings=settings)],
        exception_handlers={Exception: ui_exception_handler},
        dependencies={"principal": Provide(provide_principal, sync_to_thread=False)},
        response_headers=[ResponseHeader(name=name, value=value) for name, value in SECURITY_HEADERS.items()],
        include_in_schema=False,
    )
    static = create_static_files_router(
        path="/ui/static",
        directories=[STATIC_DIR],
        name="ui-static",
        cache_control=CacheControlHeader(max_age=3600, public=True),
        include_in_schema=False,
    )
    return [pages, static]
