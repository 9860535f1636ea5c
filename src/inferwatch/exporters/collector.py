"""The collector interface and the runner that keeps one slow or broken collector from
hurting the scrape (node_exporter's ``node_scrape_collector_*`` pattern).

A collector is anything with a ``name`` and a ``collect()`` returning metric families. The
runner calls every enabled collector in a worker thread of its own with a deadline, caches
each result briefly, and adds per collector:

* ``inferwatch_exporter_collector_duration_seconds{collector}``: how long its last run took
  (the deadline when it timed out);
* ``inferwatch_exporter_collector_success{collector}``: 1 when it completed without error;
* ``inferwatch_exporter_collector_timeouts_total{collector}``: scrapes at which its run was
  still unfinished at the deadline.

A collector that raises keeps the families it yielded before the error (so a GPU that
vanished drops only its own series) and reports ``success 0``. A timed-out collector
contributes no series at all: stale values are worse than none. At most one run per
collector is in flight: while a call hangs, later scrapes wait for that same run (up to their
own deadline) instead of starting another thread, so hung threads never pile up.

A scrape's deadline is the runner's timeout, or sooner inside :func:`scrape_deadline`: the
exporter sets it from the ``X-Prometheus-Scrape-Timeout-Seconds`` header Prometheus sends
(:func:`timeout_from_header`), so a hung collector fails alone before Prometheus gives up on
the whole target, whatever the scrape interval.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from prometheus_client.metrics_core import Metric

from inferwatch.exporters.descriptors import Descriptor
from inferwatch.exporters.redact import redact_text

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
DEFAULT_CACHE_TTL = 1.0
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
# Left of the scraper's timeout for rendering and the network, as blackbox_exporter's
# --timeout-offset does.
DEFAULT_SCRAPE_TIMEOUT_OFFSET = 0.5

# The monotonic time by which the scrape being rendered on this thread must be answered.
_SCRAPE_DEADLINE: ContextVar[float | None] = ContextVar("inferwatch_scrape_deadline", default=None)

# What the runner adds for every collector, whatever the collector emits itself.
COLLECTOR_DURATION = Descriptor(
    "inferwatch_exporter_collector_duration_seconds",
    "gauge",
    "How long the collector's last run took (the timeout when it was abandoned).",
    ("collector",),
)
COLLECTOR_SUCCESS = Descriptor(
    "inferwatch_exporter_collector_success",
    "gauge",
    "1 when the collector's last run completed without error, 0 otherwise.",
    ("collector",),
)
COLLECTOR_TIMEOUTS = Descriptor(
    "inferwatch_exporter_collector_timeouts_total",
    "counter",
    "Scrapes at which the collector's run was unfinished at the collector timeout.",
    ("collector",),
)
METRICS = (COLLECTOR_DURATION, COLLECTOR_SUCCESS, COLLECTOR_TIMEOUTS)


def timeout_from_header(
    value: str | None, *, offset: float = DEFAULT_SCRAPE_TIMEOUT_OFFSET
) -> float | None:
    """The seconds the collectors may take for a scrape whose scraper gives up after
    ``value`` seconds (the header's text): ``value - offset``, but never less than half of
    ``value``, so a short scrape timeout still leaves the collectors something. None when
    the header is absent or not a positive finite number (anyone can send it; a bad one is
    ignored, not an error)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return max(seconds - offset, seconds / 2)


@contextlib.contextmanager
def scrape_deadline(deadline: float | None) -> Iterator[None]:
    """Runners collecting inside the block finish by ``deadline`` (``time.monotonic()``),
    or by their own timeout if that comes first. None: their own timeout only."""
    token = _SCRAPE_DEADLINE.set(deadline)
    try:
        yield
    finally:
        _SCRAPE_DEADLINE.reset(token)


@runtime_checkable
class Collector(Protocol):
    """One source of metrics. ``collect`` may block; the runner bounds it with a deadline.

    The exporter's own collectors build their families from the descriptors their module
    declares in ``METRICS``; the runner needs only ``name`` and ``collect``, so any object
    with those two (a test's stand-in, a custom collector) can run beside them."""

    name: str

    def collect(self) -> Iterable[Metric]: ...


class CollectorError(Exception):
    """A collector failed in an expected way (backend down, no GPU); logged without a trace."""


@dataclass
class _Result:
    families: list[Metric]
    success: bool
    duration: float
    finished: float
    error: str = ""


@dataclass
class _Run:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    result: _Result | None = None


class _Slot:
    """Cache and in-flight bookkeeping for one collector."""

    def __init__(self, collector: Collector, secrets: Sequence[str]) -> None:
        self.collector = collector
        self.secrets = secrets
        self.lock = threading.Lock()
        self.cached: _Result | None = None
        self.running: _Run | None = None
        self.timeouts = 0
        self.last_ok = True

    def start(self, now: float, ttl: float) -> _Result | _Run:
        with self.lock:
            if self.cached is not None and now - self.cached.finished < ttl:
                return self.cached
            if self.running is None:
                self.running = _Run(started=now)
                threading.Thread(
                    target=self._run,
                    args=(self.running,),
                    name=f"inferwatch-collector-{self.collector.name}",
                    daemon=True,  # a call hung in a C library must not block interpreter exit
                ).start()
            return self.running

    def _run(self, run: _Run) -> None:
        families: list[Metric] = []
        error = ""
        try:
            for family in self.collector.collect():
                families.append(family)
        except CollectorError as exc:
            error = str(exc)
        except Exception as exc:  # a collector bug must not take the exporter down
            error = f"{type(exc).__name__}: {exc}"
            log.debug("collector %s raised", self.collector.name, exc_info=True)
        end = time.monotonic()
        result = _Result(families, not error, end - run.started, end, error)
        self._log_transition(result)
        with self.lock:
            self.cached = result
            self.running = None
        run.result = result
        run.done.set()

    def _log_transition(self, result: _Result) -> None:
        # Log changes of state only: a broken backend would otherwise log on every scrape.
        if result.success != self.last_ok:
            if result.success:
                log.info("collector %s recovered", self.collector.name)
            else:
                message = redact_text(result.error, self.secrets)
                log.warning("collector %s failed: %s", self.collector.name, message)
        self.last_ok = result.success

    def timed_out(self, run: _Run, deadline: float) -> _Result:
        with self.lock:
            self.timeouts += 1
        # A scrape that waited behind another may reach its deadline before this run began.
        waited = max(0.0, deadline - run.started)
        if self.last_ok:
            log.warning("collector %s timed out after %.3gs", self.collector.name, waited)
        self.last_ok = False
        return _Result([], False, waited, deadline, "timeout")


class CollectorRunner:
    """A prometheus_client collector running ``collectors`` with a deadline and a cache.

    Register it in a ``CollectorRegistry(auto_describe=False)``: describing would otherwise
    run every collector at registration time.
    """

    def __init__(
        self,
        collectors: Iterable[Collector],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        secrets: Sequence[str] = (),
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"collector timeout must be > 0 seconds, got {timeout}")
        if cache_ttl < 0:
            raise ValueError(f"cache TTL must be >= 0 seconds, got {cache_ttl}")
        self.slots = [_Slot(c, tuple(secrets)) for c in collectors]
        names = [s.collector.name for s in self.slots]
        if len(set(names)) != len(names):
            raise ValueError(f"collector names must be unique, got {names}")
        self.timeout = timeout
        self.cache_ttl = cache_ttl

    @property
    def names(self) -> list[str]:
        return [s.collector.name for s in self.slots]

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        deadline = now + self.timeout
        scrape = _SCRAPE_DEADLINE.get()
        if scrape is not None:
            deadline = min(deadline, scrape)
        # Start every collector before waiting on any, so the scrape takes as long as the
        # slowest collector, not the sum of them.
        started = [(slot, slot.start(now, self.cache_ttl)) for slot in self.slots]
        duration = COLLECTOR_DURATION.family()
        success = COLLECTOR_SUCCESS.family()
        timeouts = COLLECTOR_TIMEOUTS.family()
        families: list[Metric] = []
        for slot, state in started:
            if isinstance(state, _Run):
                wait = max(0.0, deadline - time.monotonic())
                result = (
                    state.result
                    if state.done.wait(wait) and state.result is not None
                    else slot.timed_out(state, deadline)
                )
            else:
                result = state
            name = slot.collector.name
            duration.add_metric([name], result.duration)
            success.add_metric([name], 1.0 if result.success else 0.0)
            timeouts.add_metric([name], slot.timeouts)
            families.extend(result.families)
        yield duration
        yield success
        yield timeouts
        yield from families
