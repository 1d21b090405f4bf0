"""What the dashboard's tests share: an app with the dashboard's secret kept in a temporary data directory, and
signing in through the form exactly as a browser does (the CSRF token from the page, the key posted once)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from handoff.config import Settings

CSRF_FIELD = re.compile(r'name="_csrf_token" value="([^"]+)"')


def ui_settings(settings: Settings, data_dir: Path, **changes: object) -> Settings:
    """The test settings with a data directory of the test's own (where the dashboard keeps its secret)."""
    return settings.model_copy(update={"data_dir": data_dir, **changes})


def csrf_token(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def post_form(client: httpx.AsyncClient, page: str, action: str, data: dict[str, str]) -> httpx.Response:
    """Load ``page``, then post ``data`` to ``action`` with the CSRF token that page carries."""
    shown = await client.get(page)
    return await client.post(action, data={**data, "_csrf_token": csrf_token(shown.text)})


async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await post_form(client, "/ui/sign-in", "/ui/sign-in", {"key": key})
