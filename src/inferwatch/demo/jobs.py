"""The asynchronous job API's bookkeeping: a bounded job store, in memory or in a directory."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ValidationError

from inferwatch.demo.generation import Kind

Status = Literal["queued", "running", "done", "failed"]
MAX_JOBS = 1000


class Job(BaseModel):
    job_id: str
    kind: Kind
    prompt: str
    duration_seconds: float
    status: Status = "queued"
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    result_bytes: int | None = None

    @classmethod
    def new(cls, kind: Kind, prompt: str, duration_seconds: float) -> Job:
        return cls(
            job_id=uuid.uuid4().hex,
            kind=kind,
            prompt=prompt,
            duration_seconds=duration_seconds,
            created_at=time.time(),
        )


class JobStore(Protocol):
    def put(self, job: Job) -> None: ...
    def get(self, job_id: str) -> Job | None: ...


class MemoryJobStore:
    """The newest ``max_jobs`` jobs; older ones are forgotten so a long-running demo stays small."""

    def __init__(self, max_jobs: int = MAX_JOBS) -> None:
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, job: Job) -> None:
        with self._lock:
            if job.job_id not in self._jobs:
                while len(self._jobs) >= self.max_jobs:
                    self._jobs.popitem(last=False)
            self._jobs[job.job_id] = job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def __len__(self) -> int:
        return len(self._jobs)


class DirectoryJobStore:
    """Jobs as JSON files, shared by the workers of a multi-worker server.

    A status poll may reach any worker, so a job created by one must be readable by all.
    """

    def __init__(self, path: str | os.PathLike[str], max_jobs: int = MAX_JOBS) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_jobs = max_jobs
        self._writes = 0

    def _file(self, job_id: str) -> Path:
        return self.path / f"{job_id}.json"

    def put(self, job: Job) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".job-")
        with os.fdopen(fd, "w") as out:
            out.write(job.model_dump_json())
        os.replace(tmp, self._file(job.job_id))
        self._writes += 1
        if self._writes % 100 == 0:  # listing the directory on every write would cost too much
            self._prune()

    def get(self, job_id: str) -> Job | None:
        if not job_id.isalnum():  # never let a path component through
            return None
        try:
            return Job.model_validate_json(self._file(job_id).read_text())
        except (FileNotFoundError, ValidationError):
            return None

    def _prune(self) -> None:
        aged: list[tuple[int, Path]] = []
        for file in self.path.glob("*.json"):
            with contextlib.suppress(FileNotFoundError):  # another worker pruned it first
                aged.append((file.stat().st_mtime_ns, file))
        aged.sort()
        for _, old in aged[: max(0, len(aged) - self.max_jobs)]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
