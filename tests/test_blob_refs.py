"""Entries and artifacts that reference blobs (api.md: Blobs), and the blobs' lifecycle around them, through HTTP.

A ``blob_id`` must name a blob of the same session (else 422, nothing written); reads, the handoff and replay
contexts return it as stored; ``has_blob=true`` filters artifacts; deleting an entry, an artifact or a blob leaves
the others alone; deleting the session deletes its blobs.
"""

from __future__ import annotations

from typing import Any

import httpx

from handoff.db import MongoDatabase
from tests.factories import Tenant

ABSENT_BLOB = "blob_" + "0" * 32


class Calls:
    """One tenant's calls under ``/v1/sessions``."""

    def __init__(self, client: httpx.AsyncClient, tenant: Tenant) -> None:
        self.client, self.headers = client, tenant.headers

    async def session(self) -> str:
        response = await self.client.post("/v1/sessions", headers=self.headers, json={})
        assert response.status_code == 201, response.text
        return str(response.json()["session_id"])

    async def blob(self, sid: str, data: bytes = b"file content") -> str:
        response = await self.client.post(f"/v1/sessions/{sid}/blobs", headers=self.headers, content=data)
        assert response.status_code == 201, response.text
        return str(response.json()["blob_id"])

    async def post(self, sid: str, route: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(f"/v1/sessions/{sid}/{route}", headers=self.headers, json=body)

    async def get(self, sid: str, route: str, **params: str) -> httpx.Response:
        response = await self.client.get(f"/v1/sessions/{sid}/{route}", headers=self.headers, params=params)
        assert response.status_code == 200, response.text
        return response

    async def delete(self, sid: str, route: str = "") -> int:
        path = f"/v1/sessions/{sid}" + (f"/{route}" if route else "")
        return (await self.client.delete(path, headers=self.headers)).status_code


def _body(response: httpx.Response) -> Any:
    assert response.status_code in {200, 201}, response.text
    return response.json()


async def test_entries_and_artifacts_keep_their_blob_id_in_every_read(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    calls = Calls(client, tenant)
    sid = await calls.session()
    blob_id = await calls.blob(sid)

    typed = _body(
        await calls.post(sid, "work-log", {"message": "saved the diff", "type": "checkpoint", "blob_id": blob_id})
    )
    action = _body(await calls.post(sid, "actions", {"action": "ran pytest", "blob_id": blob_id, "id": "run-1"}))
    artifact = _body(await calls.post(sid, "artifacts", {"path": "src/app.py", "blob_id": blob_id, "id": "art-1"}))
    plain = _body(await calls.post(sid, "artifacts", {"path": "README.md", "id": "art-2"}))
    batch = await calls.post(
        sid, "work-log/batch", {"entries": [{"message": "batched", "blob_id": blob_id, "id": "b-1"}]}
    )

    assert typed["blob_id"] == action["blob_id"] == artifact["blob_id"] == blob_id
    assert "blob_id" not in plain  # an entry without a blob reads as it was stored
    assert _body(batch)["appended"] == 1
    log = (await calls.get(sid, "work-log")).json()["items"]
    assert [entry.get("blob_id") for entry in log] == [blob_id] * 3
    assert (await calls.get(sid, "artifacts/art-1")).json()["blob_id"] == blob_id
    handoff = (await calls.get(sid, "handoff-context")).json()
    assert {a["id"]: a.get("blob_id") for a in handoff["artifacts"]} == {"art-1": blob_id, "art-2": None}
    assert all(entry["blob_id"] == blob_id for entry in handoff["recent_actions"])
    replay = (await calls.get(sid, "replay-context")).json()
    assert replay["last_checkpoint"]["blob_id"] == blob_id
    assert [a.get("blob_id") for a in replay["artifacts"]] == [blob_id, None]


async def test_a_retried_entry_with_its_blob_is_the_same_entry(client: httpx.AsyncClient, tenant: Tenant) -> None:
    calls = Calls(client, tenant)
    sid = await calls.session()
    blob_id, other = await calls.blob(sid, b"one"), await calls.blob(sid, b"two")
    body = {"message": "checkpoint", "type": "checkpoint", "id": "cp-1", "blob_id": blob_id}

    assert (await calls.post(sid, "work-log", body)).status_code == 201
    assert (await calls.post(sid, "work-log", body)).status_code == 200
    assert (await calls.post(sid, "work-log", {**body, "blob_id": other})).status_code == 422


async def test_a_blob_id_of_another_session_or_none_at_all_is_422_and_nothing_is_written(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: MongoDatabase
) -> None:
    calls, stranger = Calls(client, tenant), Calls(client, other_tenant)
    sid, sibling = await calls.session(), await calls.session()
    theirs = await stranger.blob(await stranger.session())
    siblings = await calls.blob(sibling)

    for blob_id in (siblings, theirs, ABSENT_BLOB, "not-a-blob-id"):
        for route, body in (
            ("work-log", {"message": "m", "blob_id": blob_id}),
            ("actions", {"action": "a", "blob_id": blob_id}),
            ("artifacts", {"path": "p", "blob_id": blob_id}),
            ("work-log/batch", {"entries": [{"message": "ok"}, {"message": "m", "blob_id": blob_id}]}),
        ):
            response = await calls.post(sid, route, body)
            assert response.status_code == 422, (route, blob_id, response.text)

    doc = await database["sessions"].find_one({"session_id": sid})
    assert doc is not None
    assert (doc["work_log"], doc["artifacts"], doc["action_count"], doc["artifact_count"]) == ([], [], 0, 0)


async def test_has_blob_lists_the_artifacts_with_content(client: httpx.AsyncClient, tenant: Tenant) -> None:
    calls = Calls(client, tenant)
    sid = await calls.session()
    blob_id = await calls.blob(sid)
    for n in range(5):
        body: dict[str, Any] = {"path": f"f{n}.py", "id": f"a{n}"}
        if n % 2 == 0:
            body["blob_id"] = blob_id
        _body(await calls.post(sid, "artifacts", body))

    with_blob = (await calls.get(sid, "artifacts", has_blob="true")).json()
    everything = (await calls.get(sid, "artifacts")).json()

    assert [a["id"] for a in with_blob["items"]] == ["a0", "a2", "a4"]
    assert with_blob["total"] == 3
    assert everything["total"] == 5


async def test_deleting_entries_keeps_the_blob_and_deleting_the_blob_keeps_the_entries(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    calls = Calls(client, tenant)
    sid = await calls.session()
    blob_id = await calls.blob(sid, b"kept")
    _body(await calls.post(sid, "work-log", {"message": "m", "id": "e1", "blob_id": blob_id}))
    _body(await calls.post(sid, "artifacts", {"path": "p", "id": "a1", "blob_id": blob_id}))
    _body(await calls.post(sid, "artifacts", {"path": "q", "id": "a2", "blob_id": blob_id}))

    assert await calls.delete(sid, "work-log/e1") == 204
    assert await calls.delete(sid, "artifacts/a1") == 204
    assert (await calls.get(sid, f"blobs/{blob_id}")).content == b"kept"  # the last references went, the blob stays

    assert await calls.delete(sid, f"blobs/{blob_id}") == 204
    assert (await calls.get(sid, "artifacts/a2")).json()["blob_id"] == blob_id  # the reference keeps the id
    response = await client.get(f"/v1/sessions/{sid}/blobs/{blob_id}", headers=tenant.headers)
    assert response.status_code == 404


async def test_deleting_a_session_deletes_its_blobs_and_no_other(
    client: httpx.AsyncClient, tenant: Tenant, database: MongoDatabase
) -> None:
    calls = Calls(client, tenant)
    doomed, kept = await calls.session(), await calls.session()
    for n in range(3):
        _body(await calls.post(doomed, "artifacts", {"path": f"f{n}", "blob_id": await calls.blob(doomed, b"x" * n)}))
    survivor = await calls.blob(kept, b"survivor")

    assert await calls.delete(doomed) == 204

    files = await database["fs.files"].find({}, {"metadata.blob_id": 1, "_id": 1}).to_list(None)
    assert [f["metadata"]["blob_id"] for f in files] == [survivor]
    assert await database["fs.chunks"].count_documents({"files_id": {"$ne": files[0]["_id"]}}) == 0
    assert (await calls.get(kept, f"blobs/{survivor}")).content == b"survivor"
    assert await calls.delete(doomed) == 404
