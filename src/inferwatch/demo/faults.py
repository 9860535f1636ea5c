"""Faults switchable at run time through ``/admin/faults``.

Fault values are wall-clock seconds, never multiplied by the time scale: they describe what
an operator wants to observe ("every request 350 ms slower"), and tests rely on them landing
in a known histogram bucket.

Request faults (latency, errors, hangs, streams breaking halfway, model loads) act where the
request runs; state faults
(``memory_leak_mb_per_second``, ``pool_exhaustion``, ``cold_cache``) are applied by
:mod:`inferwatch.demo.effects`, which every worker runs. ``job_leak_mb`` acts per job: each
job that runs while it is on keeps that many MiB for good, the next job run with it off
frees them all (see :class:`inferwatch.demo.jobs.JobLeak`). The upstream faults
(``upstream_failure_rate``, ``upstream_outage``) act in the model service the demo's jobs
call: each worker passes them on before its next call there.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, StrictBool

MAX_LEAK_RATE = 1024.0  # MiB per second; the leak itself stops at its cap (see leak.py)
MAX_JOB_LEAK = 256.0  # MiB per job; what all jobs keep stops at the same cap


class InjectedFault(Exception):
    """Raised by a generation endpoint when the ``error_rate`` fault fires (a 500)."""


class InjectedStreamFailure(Exception):
    """Raised into a streamed generation after its first chunk when ``stream_failure_rate``
    fires: the status line said 200, the client gets a truncated body."""


class Faults(BaseModel):
    """The complete fault configuration."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    stream_failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    added_latency_seconds: float = Field(0.0, ge=0.0, le=3600.0)
    timeout_rate: float = Field(0.0, ge=0.0, le=1.0)
    timeout_seconds: float = Field(30.0, gt=0.0, le=3600.0)
    websocket_failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    model_init_delay_seconds: float = Field(0.0, ge=0.0, le=3600.0)
    model_load_failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    memory_leak_mb_per_second: float = Field(0.0, ge=0.0, le=MAX_LEAK_RATE)
    pool_exhaustion: bool = False
    cold_cache: bool = False
    job_leak_mb: float = Field(0.0, ge=0.0, le=MAX_JOB_LEAK)
    # Passed on to the model service the demo calls (see inferwatch.demo.upstream).
    upstream_failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    upstream_outage: bool = False


class FaultUpdate(BaseModel):
    """A ``PUT /admin/faults`` body: fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float | None = Field(None, ge=0.0, le=1.0)
    stream_failure_rate: float | None = Field(None, ge=0.0, le=1.0)
    added_latency_seconds: float | None = Field(None, ge=0.0, le=3600.0)
    timeout_rate: float | None = Field(None, ge=0.0, le=1.0)
    timeout_seconds: float | None = Field(None, gt=0.0, le=3600.0)
    websocket_failure_rate: float | None = Field(None, ge=0.0, le=1.0)
    model_init_delay_seconds: float | None = Field(None, ge=0.0, le=3600.0)
    model_load_failure_rate: float | None = Field(None, ge=0.0, le=1.0)
    memory_leak_mb_per_second: float | None = Field(None, ge=0.0, le=MAX_LEAK_RATE)
    pool_exhaustion: StrictBool | None = None
    cold_cache: StrictBool | None = None
    job_leak_mb: float | None = Field(None, ge=0.0, le=MAX_JOB_LEAK)
    upstream_failure_rate: float | None = Field(None, ge=0.0, le=1.0)
    upstream_outage: StrictBool | None = None


class FaultSwitch:
    """Holds the current faults and draws from a seedable random source.

    With ``path`` the faults live in a JSON file instead of memory, so that every worker of a
    multi-worker server sees a change made through any one of them.
    """

    def __init__(
        self, defaults: Faults, *, rng: random.Random, path: str | os.PathLike[str] | None = None
    ) -> None:
        self.defaults = defaults
        self.rng = rng
        self._path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._faults = defaults
        self._loaded_mtime: int | None = None

    def get(self) -> Faults:
        if self._path is None:
            return self._faults
        try:
            mtime = self._path.stat().st_mtime_ns
        except FileNotFoundError:
            return self.defaults
        if mtime != self._loaded_mtime:  # re-read only when another worker changed it
            self._faults = Faults.model_validate_json(self._path.read_text())
            self._loaded_mtime = mtime
        return self._faults

    def update(self, change: FaultUpdate) -> Faults:
        with self._lock:
            merged = self.get().model_copy(update=change.model_dump(exclude_none=True))
            self._store(Faults.model_validate(merged.model_dump()))
            return self._faults

    def reset(self) -> Faults:
        with self._lock:
            self._store(self.defaults)
            return self._faults

    def _store(self, faults: Faults) -> None:
        self._faults = faults
        if self._path is None:
            return
        # Write then rename: a worker reading concurrently sees the old or the new file whole.
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".faults-")
        with os.fdopen(fd, "w") as out:
            json.dump(faults.model_dump(), out)
        os.replace(tmp, self._path)

    def fires(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    async def before_generation(self) -> None:
        """Apply the generation faults: extra latency, then an error or a hang."""
        faults = self.get()
        if faults.added_latency_seconds:
            await asyncio.sleep(faults.added_latency_seconds)
        if self.fires(faults.error_rate):
            raise InjectedFault("injected model failure (error_rate fault)")
        if self.fires(faults.timeout_rate):
            await asyncio.Event().wait()  # hang until the request deadline cancels us

    def stream_breaks(self) -> bool:
        """Whether the streamed generation starting now fails after its first chunk."""
        return self.fires(self.get().stream_failure_rate)

    def websocket_fails(self) -> bool:
        return self.fires(self.get().websocket_failure_rate)
