"""A generation as the job API shows it; rows of :mod:`inferwatch.demo.database`."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel

from inferwatch.demo.generation import Kind, Priority

# partial: finished, but some of its steps failed (a narration the model service refused).
Status = Literal["queued", "running", "done", "partial", "failed"]
MAX_JOBS = 1000  # rows kept in the database; older ones are pruned


class Job(BaseModel):
    job_id: str
    kind: Kind
    model: str
    priority: Priority = "normal"
    duration_seconds: float
    status: Status = "queued"
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    result_bytes: int | None = None

    @classmethod
    def new(
        cls,
        kind: Kind,
        model: str,
        duration_seconds: float,
        priority: Priority = "normal",
        status: Status = "queued",
    ) -> Job:
        created = time.time()
        return cls(
            job_id=uuid.uuid4().hex,
            kind=kind,
            model=model,
            priority=priority,
            duration_seconds=duration_seconds,
            status=status,
            created_at=created,
            started_at=created if status == "running" else None,
        )
