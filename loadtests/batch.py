"""A batch-size scalability run: every request carries ``batch_size`` takes, which the demo
runs together in one batch, and the batch size steps through a list, each held for a stage:

    locust -f loadtests/batch.py --headless --host URL

INFERWATCH_BATCH_SIZES ("1,2,4,8,16"), INFERWATCH_BATCH_STAGE_SECONDS (60) and
INFERWATCH_BATCH_USERS (1) tune it. One user keeps one batch in flight at a time, so the
model runs exactly the batch sizes asked for; more users let the server merge requests into
larger batches (up to its --max-batch-size). Afterwards, ``inferwatch report`` over the run
gives the Scalability section: throughput (inputs/s) and P95 latency per batch size, from
the batch metrics. Run on its own file: locust's other users would blur the stages.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any

from locust import HttpUser, LoadTestShape, constant, events, task

SIZES = tuple(int(n) for n in os.environ.get("INFERWATCH_BATCH_SIZES", "1,2,4,8,16").split(","))
STAGE_SECONDS = float(os.environ.get("INFERWATCH_BATCH_STAGE_SECONDS", "60"))
USERS = int(os.environ.get("INFERWATCH_BATCH_USERS", "1"))
PROMPTS = ("rain on a tin roof", "a slow piano in a large hall", "city traffic at night")
AUDIO = "/v1/audio/generate"

_started: list[float] = []  # when the test started, in this process (a worker's own clock)


@events.test_start.add_listener
def _mark_start(**_: Any) -> None:
    _started[:] = [time.monotonic()]


def current_size() -> int:
    """The batch size of the stage under way (the last one once the stages are over)."""
    elapsed = time.monotonic() - (_started[0] if _started else time.monotonic())
    return SIZES[min(int(elapsed // STAGE_SECONDS), len(SIZES) - 1)]


class BatchSizeUser(HttpUser):
    """Back-to-back generations at the stage's batch size; named by batch size, so locust's
    own statistics split the same way as the report's table."""

    wait_time = constant(0)

    @task
    def generate(self) -> None:
        size = current_size()
        body = {"prompt": random.choice(PROMPTS), "duration_seconds": 1.0, "batch_size": size}
        self.client.post(AUDIO, json=body, name=f"{AUDIO} batch_size={size}")


class BatchStages(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self._stage = -1

    def tick(self) -> tuple[int, float] | None:
        stage = int(self.get_run_time() // STAGE_SECONDS)
        if stage >= len(SIZES):
            return None
        if stage != self._stage:  # progress for CI logs: which batch size is running
            self._stage = stage
            print(
                f"batch phase {stage + 1}/{len(SIZES)}: batch size {SIZES[stage]}, {USERS} users",
                file=sys.stderr,
            )
        return USERS, USERS
