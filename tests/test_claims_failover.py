"""The short claims failover drill: no handoff claimed twice, none lost, while the primary is stepped down and
killed.

It runs ``scripts/claims_failover_drill.py --short`` as a process of its own (its 3-member replica set, its
``handoff serve --workers 2``, a producer of handoffs and six claimers; elections in about a second), like
``test_failover.py`` runs the appends drill; here its exit status and its last line (JSON) are read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DRILL = Path(__file__).resolve().parents[1] / "scripts" / "claims_failover_drill.py"
TIME_LIMIT_SECONDS = 150  # the drill takes about 30 s; this only stops a hung one


def test_claims_survive_a_step_down_and_a_killed_primary_exactly_once() -> None:
    done = subprocess.run(
        [sys.executable, str(DRILL), "--short"], capture_output=True, text=True, timeout=TIME_LIMIT_SECONDS, check=False
    )
    output = done.stdout + done.stderr

    assert done.returncode == 0, output[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["double_claims"], result["lost_handoffs"], result["lost_claims"]) == (0, 0, 0), output[-4000:]
    assert result["http_500"] == 0
    assert result["handoffs"] == result["completed_handoffs"] == result["claims_answered"] > 0
    events = " | ".join(what for _, what in result["timeline"])
    for step in ("replSetStepDown", "SIGKILL the new primary", "restarted", "healthy again", "queue drained"):
        assert step in events, events
