"""Event streams across a replica-set step-down: a live stream and a Last-Event-ID resume stay exact.

It runs ``scripts/events_failover_drill.py`` as a process of its own (its 3-member replica set, its ``handoff
serve``, a writer and two followers; elections in about a second), like ``test_failover`` runs the appends' drill,
so nothing of it shares this test session's event loop or database client. Its last line (JSON) is read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DRILL = Path(__file__).resolve().parents[1] / "scripts" / "events_failover_drill.py"
TIME_LIMIT_SECONDS = 150  # the drill takes about 30 s; this only stops a hung one


def test_streams_resume_exactly_across_a_step_down() -> None:
    done = subprocess.run(
        [sys.executable, str(DRILL)], capture_output=True, text=True, timeout=TIME_LIMIT_SECONDS, check=False
    )
    output = done.stdout + done.stderr

    assert done.returncode == 0, output[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["acknowledged"] > 0
    assert result["acknowledged_missing"] == 0, output[-4000:]
    for name in ("live", "resumed"):
        follower = result[name]
        assert follower["exact"], (name, output[-4000:])  # every stored entry, once, in the stored order
        assert (follower["lost"], follower["duplicated"], follower["duplicate_event_ids"]) == (0, 0, 0)
        assert follower["received"] == result["stored"]
    assert result["resumed"]["connections"] >= 2  # it did leave before the step-down and come back after it
    events = " | ".join(what for _, what in result["timeline"])
    assert "replSetStepDown" in events, events
    assert events.index("'resumed' left") < events.index("replSetStepDown") < events.index("reconnects"), events
