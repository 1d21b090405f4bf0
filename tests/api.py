"""Calling the sessions API as a client would, with the checks every test of it makes."""

from __future__ import annotations

from typing import Any

import httpx

from handoff.errors import PROBLEM_JSON
from tests.factories import Tenant


def ok(response: httpx.Response, status: int = 200) -> Any:
    """The JSON body of a response that must have this status."""
    assert response.status_code == status, response.text
    return response.json()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The RFC 9457 body of an error response with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= set(body)
    assert "Traceback" not in response.text
    return body


class Api:
    """Calls of one tenant against the app, relative to ``/v1/sessions``."""

    def __init__(self, client: httpx.AsyncClient, tenant: Tenant) -> None:
        self.client = client
        self.tenant = tenant

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        headers = {**self.tenant.headers, **kwargs.pop("headers", {})}
        return await self.client.request(method, f"/v1/sessions{path}", headers=headers, **kwargs)

    async def create(self, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = ok(await self.call("POST", "", body), 201)
        return result

    async def get(self, session_id: str) -> dict[str, Any]:
        result: dict[str, Any] = ok(await self.call("GET", f"/{session_id}"))
        return result

    async def post(self, session_id: str, action: str, body: Any = None, status: int = 200) -> Any:
        return ok(await self.call("POST", f"/{session_id}/{action}", body), status)

    async def in_status(self, status: str, **body: Any) -> dict[str, Any]:
        """A new session brought to ``status`` through the API."""
        session = await self.create(**body)
        sid = session["session_id"]
        if status == "paused":
            return dict(await self.post(sid, "pause"))
        if status == "completed":
            return dict(await self.post(sid, "complete"))
        if status == "failed":
            return dict(await self.post(sid, "fail"))
        return session
