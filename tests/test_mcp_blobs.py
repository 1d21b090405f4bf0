"""``attach_file`` and the blob resource through the SDK's in-memory client, on both backends.

In the service (``ServiceBackend``) a file travels as ``content``; ``handoff mcp`` (the Python client, built with
``local_files=True``) may also send the file at ``path`` from the agent's machine. Either way the artifact is
recorded with its ``blob_id``, the blob holds the bytes, and the resource serves them.
"""

from __future__ import annotations

import base64
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import BlobResourceContents

from handoff.client import AsyncHandoffClient
from handoff.config import Settings
from handoff.db import MongoDatabase
from handoff.mcp.backend import ServiceBackend
from handoff.mcp.blob_reads import MAX_RESOURCE_BLOB_BYTES
from handoff.mcp.server import build_server, fixed_backend
from tests.factories import Tenant
from tests.test_client import running
from tests.test_mcp import agent, call, principal_of, refused, text_of

__all__ = ["agent"]  # the fixture, shared with test_mcp.py


async def _start(client: Client) -> str:
    return str((await call(client, "start_session")).structured_content["session_id"])  # type: ignore[index]


async def _resource_bytes(client: Client, uri: str) -> bytes:
    content = (await client.read_resource(uri)).contents[0]
    assert isinstance(content, BlobResourceContents)
    return base64.b64decode(content.blob)


async def test_attach_file_records_the_artifact_with_its_content(agent: Client, database: MongoDatabase) -> None:
    sid = await _start(agent)

    result = await call(agent, "attach_file", session_id=sid, path="notes/plan.md", content="# Plan\nstep 1\n", id="a1")

    artifact: dict[str, Any] = result.structured_content  # type: ignore[assignment]
    blob_id = artifact["blob_id"]
    assert (artifact["path"], artifact["action"], artifact["id"]) == ("notes/plan.md", "modified", "a1")
    assert f"handoff://sessions/{sid}/blobs/{blob_id}" in text_of(result)
    stored = await database["fs.files"].find_one({"metadata.blob_id": blob_id})
    assert stored is not None
    assert stored["metadata"]["content_type"] == "text/plain; charset=utf-8"
    assert await _resource_bytes(agent, f"handoff://sessions/{sid}/blobs/{blob_id}") == b"# Plan\nstep 1\n"
    handoff = await call(agent, "get_handoff_context", session_id=sid)
    assert f"[blob {blob_id}]" in text_of(handoff)
    assert handoff.structured_content["artifacts"][0]["blob_id"] == blob_id  # type: ignore[index]


async def test_the_service_does_not_read_paths_and_a_refused_artifact_leaves_no_blob(
    agent: Client, database: MongoDatabase
) -> None:
    sid = await _start(agent)
    await call(agent, "attach_file", session_id=sid, path="a.txt", content="one", id="same")

    no_content = await refused(agent, "attach_file", session_id=sid, path="/etc/passwd")
    reused = await refused(agent, "attach_file", session_id=sid, path="b.txt", content="two", id="same")

    assert "content" in no_content
    assert "422" in reused
    assert await database["fs.files"].count_documents({"metadata.session_id": sid}) == 1


async def test_attach_file_retried_with_its_id_answers_the_stored_artifact(
    agent: Client, database: MongoDatabase
) -> None:
    sid = await _start(agent)
    arguments = {"session_id": sid, "path": "src/app.py", "content": "print('hi')\n", "id": "att-1"}
    first = (await call(agent, "attach_file", **arguments)).structured_content

    again = await call(agent, "attach_file", **arguments)
    other_bytes = await refused(agent, "attach_file", **{**arguments, "content": "print('bye')\n"})
    other_action = await refused(agent, "attach_file", **{**arguments, "action": "created"})

    assert again.structured_content == first
    assert f"blobs/{first['blob_id']}" in text_of(again)  # type: ignore[index]
    assert "422" in other_bytes
    assert "already recorded for another file" in other_bytes
    assert "already recorded for another file" in other_action
    # Only the first upload's blob is kept: each retry's own upload was removed.
    assert await database["fs.files"].count_documents({"metadata.session_id": sid}) == 1
    artifacts = await call(agent, "get_handoff_context", session_id=sid)
    assert len(artifacts.structured_content["artifacts"]) == 1  # type: ignore[index]


async def _attached_blob(client: Client, session_id: str) -> str:
    attached = await call(client, "attach_file", session_id=session_id, path="out/pytest.log", content="3 failed\n")
    return str(attached.structured_content["blob_id"])  # type: ignore[index]


async def test_entries_and_artifacts_name_a_blob_of_their_session(agent: Client, database: MongoDatabase) -> None:
    sid, other = await _start(agent), await _start(agent)
    blob_id = await _attached_blob(agent, sid)
    foreign = await _attached_blob(agent, other)

    work = await call(agent, "log_work", session_id=sid, message="ran the suite", type="checkpoint", blob_id=blob_id)
    action = await call(agent, "log_action", session_id=sid, action="pytest -q", blob_id=blob_id)
    artifact = await call(agent, "record_artifact", session_id=sid, path="out/copy.log", blob_id=blob_id)
    not_its_own = await refused(agent, "log_action", session_id=sid, action="cat it", blob_id=foreign)
    not_an_id = await refused(agent, "log_work", session_id=sid, message="x", blob_id="pytest.log")

    for result in (work, action, artifact):
        assert result.structured_content["blob_id"] == blob_id  # type: ignore[index]
    stored = await database["sessions"].find_one({"session_id": sid})
    assert stored is not None
    assert [entry.get("blob_id") for entry in stored["work_log"]] == [blob_id, blob_id]
    assert stored["artifacts"][-1]["blob_id"] == blob_id
    assert "422" in not_its_own
    assert foreign in not_its_own
    assert "422" in not_an_id
    replay = await call(agent, "get_replay_context", session_id=sid)
    assert f"[blob {blob_id}]" in text_of(replay)


async def test_log_work_names_a_blob_over_the_python_client(app: Any, tenant: Tenant, database: MongoDatabase) -> None:
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            AsyncHandoffClient("http://testserver", tenant.secret, transport=transport) as http,
            Client(build_server(fixed_backend(http))) as remote,
        ):
            sid = await _start(remote)
            blob_id = await _attached_blob(remote, sid)
            work = await call(remote, "log_work", session_id=sid, message="kept the log", blob_id=blob_id)
            action = await call(remote, "log_action", session_id=sid, action="pytest -q", blob_id=blob_id)

    assert work.structured_content["blob_id"] == action.structured_content["blob_id"] == blob_id  # type: ignore[index]
    stored = await database["sessions"].find_one({"session_id": sid})
    assert stored is not None
    assert [entry.get("blob_id") for entry in stored["work_log"]] == [blob_id, blob_id]


async def test_an_absent_blob_resource_is_not_found(agent: Client) -> None:
    sid = await _start(agent)
    result = await agent.call_tool("attach_file", {"session_id": sid, "path": "x", "content": "x"})
    assert not result.is_error
    missing = f"handoff://sessions/{sid}/blobs/blob_{'0' * 32}"
    with pytest.raises(MCPError, match="not found"):
        await agent.read_resource(missing)


async def test_handoff_mcp_sends_a_local_file(app: Any, tenant: Tenant, tmp_path: Path) -> None:
    source = tmp_path / "shot.png"
    source.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 1024)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            AsyncHandoffClient("http://testserver", tenant.secret, transport=transport) as http,
            Client(build_server(fixed_backend(http), local_files=True)) as local,
        ):
            sid = await _start(local)
            result = await call(local, "attach_file", session_id=sid, path=str(source), action="created")
            blob_id = result.structured_content["blob_id"]  # type: ignore[index]
            served = await _resource_bytes(local, f"handoff://sessions/{sid}/blobs/{blob_id}")
            blob = (await http.list_blobs(sid)).items[0]

    assert served == source.read_bytes()
    assert (blob.blob_id, blob.content_type, blob.size) == (blob_id, "image/png", source.stat().st_size)


async def test_the_blob_resource_refuses_a_blob_over_its_bound_without_reading_it_whole(
    agent: Client, tenant: Tenant, settings: Settings
) -> None:
    backend = ServiceBackend(await principal_of(tenant), settings)
    sid = await _start(agent)
    at_bound = await backend.upload_blob(sid, b"a" * MAX_RESOURCE_BLOB_BYTES)
    over = await backend.upload_blob(sid, b"b" * (6 * MAX_RESOURCE_BLOB_BYTES))

    served = await _resource_bytes(agent, f"handoff://sessions/{sid}/blobs/{at_bound.blob_id}")
    tracemalloc.start()
    try:
        with pytest.raises(MCPError, match="413") as refusal:
            await agent.read_resource(f"handoff://sessions/{sid}/blobs/{over.blob_id}")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(served) == MAX_RESOURCE_BLOB_BYTES
    assert f"GET /v1/sessions/{sid}/blobs/{over.blob_id}" in str(refusal.value)
    # The read stopped near the bound (the buffer, a cursor reply in flight), never holding the 48 MiB blob.
    assert peak < 3 * MAX_RESOURCE_BLOB_BYTES
    templates = (await agent.list_resource_templates()).resource_templates
    blob_template = next(t for t in templates if t.name == "blob")
    assert f"{MAX_RESOURCE_BLOB_BYTES:,} bytes" in (blob_template.description or "")


async def test_handoff_mcp_bounds_the_blob_resource_too(app: Any, tenant: Tenant) -> None:
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with (
            AsyncHandoffClient("http://testserver", tenant.secret, transport=transport) as http,
            Client(build_server(fixed_backend(http), max_resource_blob_bytes=1000)) as local,
        ):
            sid = await _start(local)
            small = await http.upload_blob(sid, b"s" * 1000)
            large = await http.upload_blob(sid, b"l" * 1001)
            served = await _resource_bytes(local, f"handoff://sessions/{sid}/blobs/{small.blob_id}")
            with pytest.raises(MCPError, match="over the 1,000 bytes"):
                await local.read_resource(f"handoff://sessions/{sid}/blobs/{large.blob_id}")

    assert served == b"s" * 1000
