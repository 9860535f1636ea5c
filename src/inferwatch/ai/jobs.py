"""Jobs: long generations made of steps (write a script, render scenes, narrate them) that may
partly fail, and what each job costs the process in resident memory.

One job is a :class:`JobRun` (``with``/``async with jobs.job("video") as job:``), its steps
``with job.step("narration"): ...``. The job's outcome follows from how it and its steps
ended: ``failed`` when an exception leaves the job, ``cancelled`` when it is cancelled,
``partial`` when it finished although some step failed (the step's exception was caught by
the job's code: some scenes failed, the job continued), ``complete`` otherwise;
:meth:`JobRun.set_outcome` overrides it.

Metrics (``kind`` and ``step`` are bounded):

- ``inferwatch_jobs_total{kind, outcome}`` and ``inferwatch_job_duration_seconds{kind,
  outcome}``;
- ``inferwatch_job_steps_total{kind, step, outcome}`` (success, failed, cancelled) and
  ``inferwatch_job_steps_per_job{kind}``, a histogram;
- ``inferwatch_job_memory_increase_bytes{kind}``: resident memory after the job minus before
  it (0 when it shrank). Exact for jobs run one after another; with jobs running side by
  side each one's figure includes what the others allocated meanwhile.
- ``inferwatch_job_memory_growth_ratio``: the leak criterion, growth of resident memory over
  the last ``leak_window`` jobs (default 20) of this process, measured at each job's end:
  ``(rss_now - rss_before_those_jobs) / rss_before_those_jobs``; absent until that many jobs
  have ended, the highest of the live workers in multiprocess mode.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client.registry import REGISTRY, CollectorRegistry

from inferwatch.ai import buckets
from inferwatch.ai._shared import Span, state_for
from inferwatch.metrics import Counter, Gauge, Histogram

COMPLETE = "complete"
PARTIAL = "partial"
FAILED = "failed"
CANCELLED = "cancelled"
JOB_OUTCOMES = frozenset({COMPLETE, PARTIAL, FAILED, CANCELLED})
STEP_SUCCESS = "success"
DEFAULT_LEAK_WINDOW = 20
DEFAULT_MAX_KINDS = 16

# Steps per job: one to a few hundred scenes.
STEPS = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
# Resident-memory increase per job, on the decimal megabytes limits are stated in (100 MB).
MEMORY_INCREASE_BYTES = tuple(
    float(mb * 10**6) for mb in (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
)


def resident_memory() -> float:
    """This process's resident set size in bytes."""
    import psutil

    return float(psutil.Process().memory_info().rss)


class JobSet:
    """The job metrics of one registry, and the memory history behind the leak criterion."""

    def __init__(
        self, registry: CollectorRegistry | None, duration_buckets: Sequence[float], window: int
    ) -> None:
        r = registry
        self.jobs = Counter(
            "inferwatch_jobs_total",
            "Jobs that ended, by outcome (complete, partial: finished with failed steps, "
            "failed, cancelled).",
            ("kind", "outcome"), registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "inferwatch_job_duration_seconds",
            "Duration of jobs from start to end, by outcome.",
            ("kind", "outcome"), buckets=duration_buckets, registry=r, unit="seconds",
        )  # fmt: skip
        self.steps = Counter(
            "inferwatch_job_steps_total",
            "Steps of jobs, by step name and outcome (success, failed, cancelled).",
            ("kind", "step", "outcome"), registry=r,
        )  # fmt: skip
        self.steps_per_job = Histogram(
            "inferwatch_job_steps_per_job",
            "Number of steps each job ran.",
            ("kind",), buckets=STEPS, registry=r,
        )  # fmt: skip
        self.memory_increase = Histogram(
            "inferwatch_job_memory_increase_bytes",
            "Resident memory of the process after a job minus before it (0 when it shrank).",
            ("kind",), buckets=MEMORY_INCREASE_BYTES, registry=r, unit="bytes",
        )  # fmt: skip
        self.memory_growth = Gauge(
            "inferwatch_job_memory_growth_ratio",
            f"Growth of the process's resident memory over its last {window} jobs, as a "
            "share of what it was before them (the leak criterion).",
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.window = window
        self._lock = threading.Lock()
        # Resident memory at the end of the last `window + 1` jobs: the oldest is the base.
        self._ends: collections.deque[float] = collections.deque(maxlen=window + 1)

    def job_ended(self, rss: float) -> None:
        with self._lock:
            self._ends.append(rss)
            if len(self._ends) <= self.window:
                return
            base = self._ends[0]
        if base > 0:
            self.memory_growth.labels().set((rss - base) / base)


def job_set(
    registry: CollectorRegistry | None,
    duration_buckets: Sequence[float] = buckets.INFERENCE_SECONDS,
    leak_window: int = DEFAULT_LEAK_WINDOW,
) -> JobSet:
    """The registry's one set of job metrics, created on first use."""
    config = (tuple(duration_buckets), leak_window)
    return state_for(registry).metric_set(
        "jobs", config, lambda r: JobSet(r, duration_buckets, leak_window)
    )


class JobMetrics:
    """Records jobs and their steps into ``registry``.

    ``allowed_kinds``/``max_kinds`` and ``allowed_steps``/``max_steps`` bound the labels;
    ``leak_window`` is how many jobs the memory-growth ratio spans; ``memory`` reads the
    process's resident memory (psutil by default).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        allowed_kinds: Iterable[str] | None = None,
        max_kinds: int | None = None,
        allowed_steps: Iterable[str] | None = None,
        max_steps: int | None = None,
        leak_window: int = DEFAULT_LEAK_WINDOW,
        duration_buckets: Sequence[float] = buckets.INFERENCE_SECONDS,
        memory: Callable[[], float] = resident_memory,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if leak_window < 1:
            raise ValueError(f"leak_window must be at least 1, got {leak_window!r}")
        self._state = state = state_for(registry)
        self._metrics = job_set(registry, duration_buckets, leak_window)
        self._kind = state.bound("kind", allowed_kinds, max_kinds, DEFAULT_MAX_KINDS)
        self._step = state.bound("step", allowed_steps, max_steps)
        self._memory = memory
        self._clock = clock

    def job(self, kind: str) -> JobRun:
        """Time one job: ``with jobs.job("video") as job: ...`` (also ``async with``)."""
        return JobRun(self, kind)

    def _rss(self) -> float | None:
        try:
            return self._memory()
        except Exception as exc:
            self._state.error("ai.jobs.memory", exc)
            return None


class JobRun(Span):
    """One job in progress."""

    def __init__(self, owner: JobMetrics, kind: str) -> None:
        self._owner = owner
        self._raw_kind = kind
        self._kind: str | None = None
        self._start: float | None = None
        self._rss: float | None = None
        self._outcome: str | None = None
        self.steps_run = 0
        self.steps_failed = 0

    def step(self, name: str) -> JobStep:
        """One step: ``with job.step("render"): ...``; an exception inside it marks the step
        failed and passes through (catch it to let the job continue, partly failed)."""
        return JobStep(self, name)

    def set_outcome(self, outcome: str) -> None:
        """Override the outcome (complete, partial, failed, cancelled)."""
        if outcome in JOB_OUTCOMES:
            self._outcome = outcome
        else:
            self._owner._state.error("ai.jobs.outcome", ValueError(f"unknown outcome {outcome!r}"))

    def _kind_label(self) -> str:
        if self._kind is None:
            self._kind = self._owner._kind(self._raw_kind)
        return self._kind

    def _begin(self) -> None:
        try:
            self._rss = self._owner._rss()
            self._start = self._owner._clock()
        except Exception as exc:
            self._owner._state.error("ai.jobs.job", exc)

    def _end(self, exc: BaseException | None) -> None:
        o = self._owner
        try:
            if self._start is None:
                return  # _begin failed and was reported
            elapsed = o._clock() - self._start
            outcome = self._outcome or self._judge(exc)
            m, kind = o._metrics, self._kind_label()
            m.jobs.labels(kind, outcome).inc()
            m.duration.labels(kind, outcome).observe(elapsed)
            m.steps_per_job.labels(kind).observe(self.steps_run)
            rss = o._rss()
            if rss is not None:
                if self._rss is not None:
                    m.memory_increase.labels(kind).observe(max(0.0, rss - self._rss))
                m.job_ended(rss)
        except Exception as err:
            o._state.error("ai.jobs.job", err)

    def _judge(self, exc: BaseException | None) -> str:
        if exc is not None:
            return FAILED if isinstance(exc, Exception) else CANCELLED
        return PARTIAL if self.steps_failed else COMPLETE


class JobStep(Span):
    """One step of a job."""

    def __init__(self, job: JobRun, name: str) -> None:
        self._job = job
        self._name = name

    def _begin(self) -> None:
        self._job.steps_run += 1

    def _end(self, exc: BaseException | None) -> None:
        job = self._job
        if exc is None:
            outcome = STEP_SUCCESS
        elif isinstance(exc, Exception):
            outcome = FAILED
            job.steps_failed += 1
        else:
            outcome = CANCELLED
        o = job._owner
        try:
            o._metrics.steps.labels(job._kind_label(), o._step(self._name), outcome).inc()
        except Exception as err:
            o._state.error("ai.jobs.step", err)
