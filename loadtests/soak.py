"""An endurance (soak) run: a steady user count held for a long time, then stop. Add it to
the run with

    locust -f loadtests/locustfile.py,loadtests/soak.py --headless --host URL

INFERWATCH_SOAK_USERS (20), INFERWATCH_SOAK_SECONDS (3600) and INFERWATCH_SOAK_SPAWN_RATE
(users started per second, 2) tune it. Afterwards, ``inferwatch report`` over the run gives
the Trends section: CPU and resident memory as slopes per hour with their 95% intervals, so
a slow leak shows as a rising line whose interval excludes 0. Kept out of locustfile.py
because locust always uses a shape it finds, overriding -u/-r/-t.
"""

from __future__ import annotations

import os
import sys

from locust import LoadTestShape

USERS = int(os.environ.get("INFERWATCH_SOAK_USERS", "20"))
SECONDS = float(os.environ.get("INFERWATCH_SOAK_SECONDS", "3600"))
SPAWN_RATE = float(os.environ.get("INFERWATCH_SOAK_SPAWN_RATE", "2"))
PHASES = 10  # progress lines over the run, one per tenth


class Soak(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self._phase = -1

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        if elapsed >= SECONDS:
            return None
        phase = int(elapsed * PHASES // SECONDS)
        if phase != self._phase:  # progress for CI logs: how far the soak has come
            self._phase = phase
            print(
                f"soak phase {phase + 1}/{PHASES}: {USERS} users, "
                f"{elapsed / 60:.1f} of {SECONDS / 60:.1f} min",
                file=sys.stderr,
            )
        return USERS, SPAWN_RATE
