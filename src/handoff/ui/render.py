"""How a dashboard page is rendered: the Jinja environment, its filters, and the context every page shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template import TemplateConfig

from handoff import __version__, clock
from handoff.ui import views

STATIC_DIR = Path(__file__).parent / "static"
FLASH = "flash"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """Templates from the package, autoescaped; a missing variable is an error, not an empty string."""
    environment = Environment(
        loader=PackageLoader("handoff.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters |= {
        "when": views.when,
        "iso": views.iso,
        "ago": views.ago,
        "pretty_json": views.pretty_json,
        "scalar": views.scalar,
        "lease_left": views.lease_left,
    }
    environment.globals |= {"version": __version__, "query": views.query_string}
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def browser_session(request: Request[Any, Any, Any]) -> dict[str, Any] | None:
    """The browser session's data, or ``None`` when there is none (never set, or cleared by this request)."""
    data = request.scope.get("session")
    return data if isinstance(data, dict) else None


def flash(request: Request[Any, Any, Any], message: str) -> None:
    """A one-line message the next page shows once (kept in the browser session, never in the URL)."""
    data = browser_session(request)
    if data is None:
        request.set_session({FLASH: message})
    else:
        data[FLASH] = message


def page(request: Request[Any, Any, Any], name: str, *, status_code: int = 200, **context: Any) -> Template:
    """Render a page with what the layout needs: who is signed in, the time, and a pending flash message."""
    principal = getattr(request.state, "principal", None)
    data = browser_session(request)
    message = data.pop(FLASH, None) if data else None
    return Template(
        template_name=name,
        context={"principal": principal, "now": clock.now(), "flash": message, "nav": None, **context},
        status_code=status_code,
    )


def fragment(request: Request[Any, Any, Any], name: str, **context: Any) -> str:
    """A template rendered to a string with the context a page of this request gets (its CSRF field included),
    for a live stream to send: the same template as the page, so a live part never differs from a loaded one."""
    template = Template(template_name=name, context={"now": clock.now(), **context})
    engine = request.app.template_engine
    assert isinstance(engine, JinjaTemplateEngine)  # the app's template_config is ours
    return engine.get_template(name).render(**template.create_template_context(request))
