"""LangGraph's own conformance suite (langgraph-checkpoint-conformance) against a live ``handoff serve``.

Every base capability (58 tests) and every extended one the saver declares must pass, test bodies unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES, DetectedCapabilities

from handoff.integrations.langgraph import HandoffCheckpointSaver
from tests.live_service import LiveService


async def test_conformance_suite_passes_every_capability(live_service: LiveService) -> None:
    @checkpointer_test(name="HandoffCheckpointSaver")
    async def handoff_saver() -> AsyncIterator[HandoffCheckpointSaver]:
        async with HandoffCheckpointSaver(base_url=live_service.url, api_key=live_service.api_key) as saver:
            yield saver

    saver = HandoffCheckpointSaver(base_url=live_service.url, api_key=live_service.api_key)
    declared = DetectedCapabilities.from_instance(saver).detected
    await saver.aclose()
    assert declared == ALL_CAPABILITIES

    report = await validate(handoff_saver)
    report.print_report()
    failures = {name: result.failures for name, result in report.results.items() if result.tests_failed}
    assert not failures, failures
    passed = {name: result.tests_passed for name, result in report.results.items()}
    assert (
        sum(
            passed[c.value]
            for c in ALL_CAPABILITIES
            if c.value in {"put", "put_writes", "get_tuple", "list", "delete_thread"}
        )
        == 58
    ), passed
    assert all(passed.get(c.value, 0) > 0 for c in ALL_CAPABILITIES), passed
