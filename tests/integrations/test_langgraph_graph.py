"""A real LangGraph ``StateGraph`` on the handoff saver: interrupt and resume, time travel, a fork, sync graphs.

Runs against a live ``handoff serve``; what LangGraph stored is also read back as a person would, through the
client (typed entries whose messages say step and node).
"""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, interrupt

from handoff.client import AsyncHandoffClient, HandoffClient
from handoff.integrations.langgraph import HandoffCheckpointSaver
from tests.live_service import LiveService


class State(TypedDict):
    steps: Annotated[list[str], operator.add]
    answer: str


def _draft(state: State) -> dict[str, Any]:
    return {"steps": ["draft"]}


def _ask(state: State) -> dict[str, Any]:
    answer = interrupt({"question": "ship it?"})
    return {"steps": ["ask"], "answer": answer}


def _finish(state: State) -> dict[str, Any]:
    return {"steps": [f"finish:{state['answer']}"]}


def _graph(saver: HandoffCheckpointSaver) -> CompiledStateGraph[Any, Any, Any, Any]:
    graph = StateGraph(State)
    graph.add_node("draft", _draft)
    graph.add_node("ask", _ask)
    graph.add_node("finish", _finish)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "ask")
    graph.add_edge("ask", "finish")
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=saver)


async def test_interrupt_resume_history_and_fork(live_service: LiveService) -> None:
    config: Any = {"configurable": {"thread_id": f"t-{uuid.uuid4().hex[:8]}"}}
    async with HandoffCheckpointSaver(base_url=live_service.url, api_key=live_service.api_key) as saver:
        app = _graph(saver)
        first = await app.ainvoke({"steps": [], "answer": ""}, config)
        assert first["__interrupt__"][0].value == {"question": "ship it?"}
        paused = await app.aget_state(config)
        assert paused.next == ("ask",)

    # A new saver (as after a restart) resumes the thread from handoff.
    async with HandoffCheckpointSaver(base_url=live_service.url, api_key=live_service.api_key) as saver:
        app = _graph(saver)
        done = await app.ainvoke(Command(resume="yes"), config)
        assert done["steps"] == ["draft", "ask", "finish:yes"]

        history = [snapshot async for snapshot in app.aget_state_history(config)]
        assert [s.metadata["step"] for s in history if s.metadata] == [3, 2, 1, 0, -1]
        assert history[0].values["steps"] == ["draft", "ask", "finish:yes"]

        # Time travel: the checkpoint before "ask" ran, and a fork from it with another answer.
        before_ask = next(s for s in history if s.next == ("ask",))
        assert before_ask.values["steps"] == ["draft"]
        fork = await app.aupdate_state(before_ask.config, {"steps": ["edited"]})
        paused_again = await app.ainvoke(None, fork)
        assert paused_again["__interrupt__"][0].value == {"question": "ship it?"}
        forked = await app.ainvoke(Command(resume="no"), config)
        assert forked["steps"] == ["draft", "edited", "ask", "finish:no"]
        latest = await app.aget_state(config)
        assert latest.values["steps"] == ["draft", "edited", "ask", "finish:no"]
        # The fork is a new branch: the first run's final checkpoint is still in the history.
        ids = [s.config["configurable"]["checkpoint_id"] async for s in app.aget_state_history(config)]
        assert history[0].config["configurable"]["checkpoint_id"] in ids

    async with AsyncHandoffClient(live_service.url, live_service.api_key) as client:
        session = (await client.list_sessions(external_id=f"langgraph:{config['configurable']['thread_id']}")).items[0]
        assert session.agent_type == "langgraph"
        checkpoints = await client.get_work_log(session.session_id, type="checkpoint", limit=100)
        messages = [entry.message for entry in checkpoints.items]  # type: ignore[union-attr]
        assert "LangGraph step 1 (loop) after draft: steps" in messages
        interrupts = await client.get_work_log(session.session_id, type="warning")
        assert any("ask interrupted" in e.message for e in interrupts.items)  # type: ignore[union-attr]


def test_sync_graph_and_a_large_state(live_service: LiveService) -> None:
    """A sync graph uses the sync methods; a state over 64 KiB is one blob, read back whole, also from a copy."""
    big = "x" * 300_000
    thread_id, copy_id = f"s-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    config: Any = {"configurable": {"thread_id": thread_id}}
    with HandoffCheckpointSaver(base_url=live_service.url, api_key=live_service.api_key) as saver:
        app = _graph(saver)
        app.invoke({"steps": [big], "answer": ""}, config)
        app.invoke(Command(resume="ok"), config)
        state = app.get_state(config)
        assert state.values["steps"] == [big, "draft", "ask", "finish:ok"]
        assert len(list(app.get_state_history(config))) == 5

        with HandoffClient(live_service.url, live_service.api_key) as client:
            session = client.list_sessions(external_id=f"langgraph:{thread_id}").items[0]
            blobs = client.list_blobs(session.session_id)
            assert blobs.total >= 1
            assert all(blob.content_type == "application/octet-stream" for blob in blobs.items)
            entries = client.get_work_log(session.session_id, limit=1000).items
            assert not [entry for entry in entries if entry.id.startswith("pt.")]  # no part entries any more
            latest = client.get_work_log(session.session_id, type="checkpoint", order="desc", limit=1).items[0]
            assert latest.blob_id in {blob.blob_id for blob in blobs.items}

            # A copy gets blobs of its own session (an entry may only name a blob of its session).
            saver.copy_thread(thread_id, copy_id)
            copy_config: Any = {"configurable": {"thread_id": copy_id}}
            assert app.get_state(copy_config).values["steps"] == [big, "draft", "ask", "finish:ok"]
            copy = client.list_sessions(external_id=f"langgraph:{copy_id}").items[0]
            assert client.list_blobs(copy.session_id).total == blobs.total

            # Pruning to the latest checkpoint removes the blobs of the ones it drops.
            saver.prune([thread_id], strategy="keep_latest")
            assert 1 <= client.list_blobs(session.session_id).total < blobs.total
            assert app.get_state(config).values["steps"] == [big, "draft", "ask", "finish:ok"]

        saver.delete_thread(thread_id)
        saver.delete_thread(copy_id)
        assert saver.get_tuple(config) is None
