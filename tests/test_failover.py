"""The short failover drill: no acknowledged append lost or doubled while the primary is stepped down and killed.

It runs ``scripts/failover_drill.py --short`` as a process of its own (its 3-member replica set, its
``handoff serve``, its 8 writers; elections in about a second), so nothing of it shares this test session's
event loop, database client or Beanie state. The drill itself checks and prints everything; here its exit
status and its last line (JSON) are read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DRILL = Path(__file__).resolve().parents[1] / "scripts" / "failover_drill.py"
TIME_LIMIT_SECONDS = 120  # the drill takes about 30 s; this only stops a hung one


def test_appends_survive_a_step_down_and_a_killed_primary_exactly_once() -> None:
    done = subprocess.run(
        [sys.executable, str(DRILL), "--short"], capture_output=True, text=True, timeout=TIME_LIMIT_SECONDS, check=False
    )
    output = done.stdout + done.stderr

    assert done.returncode == 0, output[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["lost"], result["duplicated"], result["http_500"]) == (0, 0, 0), output[-4000:]
    assert result["acknowledged"] == result["stored"] > 0
    assert result["sessions_with_wrong_counters"] == 0
    assert result["sealed_pages"] > 0  # pages sealed all through the step-down and the kill
    events = " | ".join(what for _, what in result["timeline"])
    for step in ("replSetStepDown", "SIGKILL the new primary", "restarted", "healthy again"):
        assert step in events, events
