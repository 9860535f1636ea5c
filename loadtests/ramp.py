"""A stepped ramp: hold each user count for a while, then stop. Add it to the run with

    locust -f loadtests/locustfile.py,loadtests/ramp.py --headless --host URL

INFERWATCH_RAMP_USERS ("1,5,10,20,50") and INFERWATCH_RAMP_STAGE_SECONDS (60) tune it. Kept
out of locustfile.py because locust always uses a shape it finds, overriding -u/-r/-t.
"""

from __future__ import annotations

import os
import sys

from locust import LoadTestShape

USERS = tuple(int(n) for n in os.environ.get("INFERWATCH_RAMP_USERS", "1,5,10,20,50").split(","))
STAGE_SECONDS = float(os.environ.get("INFERWATCH_RAMP_STAGE_SECONDS", "60"))


class StepRamp(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self._stage = -1

    def tick(self) -> tuple[int, float] | None:
        stage = int(self.get_run_time() // STAGE_SECONDS)
        if stage >= len(USERS):
            return None
        if stage != self._stage:  # progress for CI logs: which load phase is running
            self._stage = stage
            print(f"load phase {stage + 1}/{len(USERS)}: {USERS[stage]} users", file=sys.stderr)
        return USERS[stage], max(USERS[stage], 1)
