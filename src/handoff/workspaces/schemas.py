"""What the workspace domain hands out: the resolved caller of a request."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the workspace a valid API key opens, and that key's id."""

    workspace_id: str
    api_key_id: str
