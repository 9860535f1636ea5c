"""A generation as the job API shows it; rows of :mod:`inferwatch.demo.database`."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel

from inferwatch.demo.generation import Kind, Priority
from inferwatch.demo.leak import MemoryLeak

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


class JobLeak:
    """The ``job_leak_mb`` fault: every job run while it is on keeps ``job_leak_mb`` MiB of
    resident memory that nothing frees, as a per-job cache without a bound would.

    The leak criterion (growth over the last 20 jobs) must see memory that grows with the
    number of jobs, not with time: a job-free pause adds nothing. The first job run with the
    fault off gives it all back, so a test can leak and then measure a clean run again. The
    memory is :class:`~inferwatch.demo.leak.MemoryLeak`'s (written, so resident; capped).
    """

    def __init__(self) -> None:
        self._memory = MemoryLeak()

    @property
    def kept(self) -> int:
        """Bytes the jobs keep now."""
        return self._memory.leaked

    def job_ran(self, mib: float) -> None:
        """One job ran under ``job_leak_mb=mib``: keep ``mib`` MiB more (0: free them all)."""
        # One job is one "second" of a leak of mib MiB per second.
        self._memory.advance(mib, 1.0)
