"""The handoff and replay contexts as JSON-ready data, shaped entry by entry with plain dicts.

A context lists up to ~620 entries (the newest 200 checkpoints, decisions and errors, up to 200 artifacts, 20
recent entries). Built as Pydantic models, every entry cost a validation on the way in and a serialisation on the
way out, ~5 µs an entry (docs/benchmarks.md, "The contexts' answers without a model per entry"): at 1,000,000
entries the replay context's size, not its reads, had become its cost. The entries were validated when they were
written, so here each is only picked into the shape of its model, field for field and in the model's field order:
what ``model_dump(mode="json")`` of the models of ``schemas.py`` gives, and so, once encoded, the same bytes.

The models stay what the answer *is*: the OpenAPI schema, the client, and the MCP tools, which validate this data
into them (``queries.replay_context``). ``tests/test_sessions_context_answers.py`` holds both to the same bytes.
Pure: no database, no clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec
from litestar.serialization import encode_json

from handoff.schemas import isoformat
from handoff.sessions import views
from handoff.sessions.models import ArtifactAction, SessionStatus
from handoff.sessions.schemas import PlanSummary, PlanWithProgress

Doc = Mapping[str, Any]
Json = dict[str, Any]


def _with_blob(answer: Json, entry: Doc) -> Json:
    """``blob_id`` last, and only when the entry has one (the models leave it out when none)."""
    blob_id = entry.get("blob_id")
    if blob_id is not None:
        answer["blob_id"] = blob_id
    return answer


def typed_entry(entry: Doc) -> Json:
    """A typed work-log entry (``TypedEntry``): ``data`` is ``{}`` when the entry has none."""
    answer = {
        "id": entry["id"],
        "message": entry["message"],
        "type": entry["type"],
        "data": entry.get("data") or {},
        "timestamp": isoformat(entry["timestamp"]),
    }
    return _with_blob(answer, entry)


def work_log_entry(entry: Doc) -> Json:
    """Any work-log entry: an action entry (``ActionEntry``) has ``action``, a typed one ``message``."""
    if "action" not in entry:
        return typed_entry(entry)
    answer = {
        "id": entry["id"],
        "action": entry["action"],
        "details": entry.get("details"),
        "timestamp": isoformat(entry["timestamp"]),
    }
    return _with_blob(answer, entry)


def artifact(entry: Doc) -> Json:
    """An artifact (``Artifact``)."""
    answer = {
        "id": entry["id"],
        "path": entry["path"],
        "action": entry["action"],
        "metadata": entry.get("metadata"),
        "timestamp": isoformat(entry["timestamp"]),
    }
    return _with_blob(answer, entry)


def typed_text(entry: Doc) -> bytes:
    """A typed entry's JSON text in the answer (Litestar's encoder, the route's: BSON's ``Int64`` in ``data`` is an
    ``int`` to it): what the session's newest notables keep (``newest_notables.py``) and :func:`typed_list` writes."""
    return encode_json(typed_entry(entry))


def typed_list(entries: Iterable[Doc | bytes]) -> msgspec.Raw:
    """A list of typed entries as its JSON text, each entry either as stored or as answered already (its JSON
    text: the session's newest notables keep them so, ``newest_notables.py``), which is embedded as it is."""
    texts = [entry if isinstance(entry, bytes) else typed_text(entry) for entry in entries]
    return msgspec.Raw(b"[" + b",".join(texts) + b"]")


def _newest_first(entries: Iterable[Doc]) -> list[Json]:
    return [work_log_entry(entry) for entry in reversed(list(entries))]


def handoff_context(view: Doc, plan: PlanWithProgress | None) -> Json:
    """``HandoffContext``: what the next agent reads first. ``view`` carries ``recent`` (oldest first) and
    ``artifacts``."""
    answer = {
        "session_id": view["session_id"],
        "agent_type": view.get("agent_type"),
        "started_at": isoformat(view["started_at"]),
        "last_active_at": isoformat(view["last_active_at"]),
        "context_summary": view.get("context_summary"),
        "recent_actions": _newest_first(view.get("recent", [])),
        "artifacts": [artifact(entry) for entry in view.get("artifacts", [])],
        "handoff_notes": view.get("handoff_notes"),
    }
    if plan is not None:  # the model leaves ``plan`` out when there is none
        answer["plan"] = plan.model_dump(mode="json")
    return answer


def replay_context(view: Doc, plan: PlanSummary | None, now: datetime) -> Json:
    """``ReplayContext``: everything to continue from. ``view`` carries ``recent``, ``last_entry``,
    ``checkpoints``, ``decisions``, ``errors``, ``artifacts`` and ``artifacts_by_action``, each computed on the
    server. The three notable lists are JSON text already (:func:`typed_list`): an encoder embeds them as they
    are, and :func:`decoded` gives the plain data back."""
    checkpoint = view.get("last_checkpoint")
    total = view.get("action_count", 0)
    progress = views.progress_summary(
        total=total,
        checkpoints=view.get("checkpoint_count", 0),
        errors=view.get("error_count", 0),
        last_entry=view.get("last_entry"),
    )
    by_action = view["artifacts_by_action"]
    return {
        "session_id": view["session_id"],
        "status": SessionStatus(view["status"]).value,
        "agent_type": view.get("agent_type"),
        "plan": plan.model_dump(mode="json") if plan else None,
        "started_at": isoformat(view["started_at"]),
        "last_active_at": isoformat(view["last_active_at"]),
        "duration": views.duration_text(views.duration_minutes(view.get("started_at"), view.get("ended_at"), now)),
        "context_summary": view.get("context_summary"),
        "progress_summary": progress.model_dump(mode="json"),
        "last_checkpoint": typed_entry(checkpoint) if checkpoint else None,
        "checkpoints": typed_list(view.get("checkpoints", [])),
        "decisions": typed_list(view.get("decisions", [])),
        "errors": typed_list(view.get("errors", [])),
        "artifacts": [artifact(entry) for entry in view.get("artifacts", [])],
        "artifacts_by_action": {action.value: list(by_action[action.value]) for action in ArtifactAction},
        "recent_actions": _newest_first(view.get("recent", [])),
        "total_actions": total,
        "handoff_notes": view.get("handoff_notes"),
        "final_summary": view.get("final_summary"),
    }


def decoded(answer: Json) -> Json:
    """An answer with its embedded JSON texts (:func:`typed_list`) as plain data again, for a reader that validates
    it into its model (the MCP tools)."""
    return {
        key: msgspec.json.decode(value) if isinstance(value, msgspec.Raw) else value for key, value in answer.items()
    }
