"""What LangGraph's objects are as handoff entries, without I/O: their deterministic ids and readable messages.

A checkpoint is ``cp.<ns>.<checkpoint_id>`` (``<ns>`` is ``r`` for the root namespace, else a hash of it), its
writes ``wr.<ns>.<checkpoint_id>.<hash of task_id and index>``. Shared by the saver's async store and its
generated blocking twin (``_langgraph_async`` and ``_langgraph_sync``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointMetadata
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT

from handoff.integrations import _values

AGENT_TYPE = "langgraph"


def ns_key(checkpoint_ns: str) -> str:
    return "r" if checkpoint_ns == "" else _values.digest(checkpoint_ns, 12)


def checkpoint_prefix(checkpoint_ns: str | None) -> str:
    """The id prefix of a namespace's checkpoints (of every namespace when None)."""
    return "cp." if checkpoint_ns is None else f"cp.{ns_key(checkpoint_ns)}."


def checkpoint_entry_id(checkpoint_ns: str, checkpoint_id: str) -> str:
    return checkpoint_prefix(checkpoint_ns) + _values.safe_token(checkpoint_id, 36)


def writes_prefix(checkpoint_ns: str, checkpoint_id: str) -> str:
    return f"wr.{ns_key(checkpoint_ns)}.{_values.safe_token(checkpoint_id, 36)}."


def node_of(task_path: str) -> str:
    """The node name in a task path such as ``~__pregel_pull, agent``."""
    parts = [part.strip() for part in task_path.split(",")]
    return parts[1] if len(parts) > 1 and parts[1] else (task_path or "a task")


def thread_and_namespace(config: RunnableConfig) -> tuple[str, str]:
    configurable = config["configurable"]
    return str(configurable["thread_id"]), str(configurable.get("checkpoint_ns", ""))


def describe(metadata: CheckpointMetadata, checkpoint_ns: str, ran: list[str] | None, updated: Sequence[str]) -> str:
    """A checkpoint as a person reads it in handoff: ``step 3 (loop) after agent: messages``."""
    where = f" in {checkpoint_ns}" if checkpoint_ns else ""
    after = f" after {', '.join(dict.fromkeys(ran))}" if ran else ""
    channels = ", ".join(channel for channel in updated if not channel.startswith("branch:"))
    step = metadata.get("step")
    source = metadata.get("source")
    return f"LangGraph step {step} ({source}){where}{after}" + (f": {channels}" if channels else "")


def write_entry(
    entry_id: str,
    *,
    node: str,
    channel: str,
    value: Any,
    task_id: str,
    task_path: str,
    index: int,
    packed: dict[str, Any],
) -> dict[str, Any]:
    if channel == ERROR:
        kind, message = "error", f"{node} failed: {value!r}"
    elif channel == INTERRUPT:
        kind, message = "warning", f"{node} interrupted, waiting for input: {value!r}"
    else:
        kind, message = "info", f"{node} wrote {channel}"
    return {
        "id": entry_id,
        "type": kind,
        "message": message[:1000],
        "data": {
            "task_id": task_id,
            "task_path": task_path,
            "index": index,
            "channel": channel,
            "value": packed,
        },
    }
