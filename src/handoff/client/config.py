"""Where a client finds its service when the caller does not say: two environment variables, read here only.

The service's own rule (only ``handoff.config`` reads ``os.environ``) holds for the server; a client runs in the
agent's process, so it has this one function of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "HANDOFF_URL"
API_KEY_VARIABLE = "HANDOFF_API_KEY"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """The service URL and the workspace API key a client talks with."""

    url: str
    api_key: str | None


def load_client_config(
    url: str | None = None, api_key: str | None = None, *, environ: Mapping[str, str] | None = None
) -> ClientConfig:
    """Explicit arguments first, then ``HANDOFF_URL`` (default ``http://127.0.0.1:8000``) and ``HANDOFF_API_KEY``.

    ``environ`` replaces ``os.environ`` (for tests). A missing key is allowed (the health probes need none);
    every ``/v1`` call then fails with :class:`handoff.client.Unauthorized`.
    """
    env = os.environ if environ is None else environ
    resolved_url = url or env.get(URL_VARIABLE) or DEFAULT_URL
    resolved_key = api_key or env.get(API_KEY_VARIABLE) or None
    return ClientConfig(url=resolved_url.rstrip("/"), api_key=resolved_key)
