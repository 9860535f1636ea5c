"""Jobs made of steps (``inferwatch.ai.JobMetrics``): outcomes, steps, the resident memory each
job adds and the leak criterion over the last N jobs, read from the real process."""

from __future__ import annotations

import asyncio
import mmap

import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from inferwatch.ai import JobMetrics
from inferwatch.ai.jobs import resident_memory
from tests.support import Metrics

MB = 10**6


def resident(size: int) -> mmap.mmap:
    """``size`` bytes of new memory, every page written, so resident: fresh pages from the
    kernel, never memory the allocator kept from a test before (already resident)."""
    region = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        region[offset] = 1
    return region


def scrape(registry: CollectorRegistry) -> Metrics:
    return Metrics(generate_latest(registry).decode())


class Readings:
    """The real resident-memory reader, remembering what it read."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def __call__(self) -> float:
        self.values.append(resident_memory())
        return self.values[-1]


def test_outcomes_steps_and_partial_failure() -> None:
    registry = CollectorRegistry()
    jobs = JobMetrics(registry)
    with jobs.job("video") as job:  # complete: three steps, all fine
        for step in ("script", "render", "narration"):
            with job.step(step):
                pass
    with jobs.job("video") as job:  # partial: one scene fails, the job goes on
        for scene in range(4):
            try:
                with job.step("scene"):
                    if scene == 2:
                        raise ConnectionError("the TTS service is down")
            except ConnectionError:
                pass
    with pytest.raises(RuntimeError), jobs.job("video") as job, job.step("render"):
        raise RuntimeError("out of disk")

    async def cancelled() -> None:
        async def work() -> None:
            async with jobs.job("music") as job:
                with job.step("render"):
                    await asyncio.Event().wait()

        task = asyncio.ensure_future(work())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    m = scrape(registry)
    total = "inferwatch_jobs_total"
    got = {o: m.value(total, kind="video", outcome=o) for o in ("complete", "partial", "failed")}
    assert got == {"complete": 1, "partial": 1, "failed": 1}
    assert m.value(total, kind="music", outcome="cancelled") == 1
    steps = "inferwatch_job_steps_total"
    assert m.value(steps, kind="video", step="scene", outcome="success") == 3
    assert m.value(steps, kind="video", step="scene", outcome="failed") == 1
    assert m.value(steps, kind="video", step="render", outcome="failed") == 1
    assert m.value(steps, kind="music", step="render", outcome="cancelled") == 1
    per_job = "inferwatch_job_steps_per_job"
    assert (m.value(f"{per_job}_count", kind="video"), m.value(f"{per_job}_sum", kind="video")) == (
        3,
        3 + 4 + 1,
    )
    assert m.value("inferwatch_job_duration_seconds_count", kind="video") == 3


def test_memory_increase_per_job_is_the_resident_memory_it_added() -> None:
    registry = CollectorRegistry()
    readings = Readings()
    jobs = JobMetrics(registry, memory=readings)
    kept = []
    with jobs.job("render"):
        kept.append(resident(150 * MB))
    before, after = readings.values
    assert after - before >= 150 * MB
    m = scrape(registry)
    name = "inferwatch_job_memory_increase_bytes"
    assert m.value(f"{name}_sum", kind="render") == after - before
    assert m.bucket(name, 100 * MB, kind="render") == 0
    assert m.bucket(name, 250 * MB, kind="render") == 1
    del kept


def test_leak_ratio_spans_the_last_n_jobs() -> None:
    """With a window of 5 jobs the ratio appears at the end of the sixth and compares the
    resident memory then with the end of the first; each job here keeps 20 MB."""
    registry = CollectorRegistry()
    readings = Readings()
    jobs = JobMetrics(registry, leak_window=5, memory=readings)
    kept = []
    growth = "inferwatch_job_memory_growth_ratio"
    for n in range(7):
        with jobs.job("music"):
            kept.append(resident(20 * MB))
        ends = readings.values[1::2]
        m = scrape(registry)
        if n < 5:
            assert m.samples(growth) == []
        else:
            assert m.value(growth) == (ends[-1] - ends[-6]) / ends[-6]
    assert m.value(growth) >= 5 * 20 * MB / ends[-6]
    del kept


def test_labels_are_bounded_and_a_broken_reader_never_fails_the_job() -> None:
    registry = CollectorRegistry()

    def broken() -> float:
        raise OSError("no /proc here")

    jobs = JobMetrics(registry, max_kinds=1, memory=broken)
    for kind in ("video", "music"):
        with jobs.job(kind) as job, job.step("render"):
            pass
    m = scrape(registry)
    assert m.value("inferwatch_jobs_total", kind="video", outcome="complete") == 1
    assert m.value("inferwatch_jobs_total", kind="_OTHER", outcome="complete") == 1
    assert m.samples("inferwatch_job_memory_increase_bytes_count") == []
    errors = "inferwatch_instrumentation_errors_total"
    assert m.value(errors) == m.value(errors, component="ai.jobs.memory") == 4
