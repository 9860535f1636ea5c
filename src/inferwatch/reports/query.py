"""Thin helpers over the Prometheus client: instant values keyed by label tuples, exact
counter deltas, and progress on stderr (a report runs a few dozen queries)."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from inferwatch.stack.prometheus_api import Prometheus, QueryError, Series
from inferwatch.stack.prometheus_config import JOB_ALERT_SINK, JOB_EXPORTER

Key = tuple[str, ...]

# inferwatch's own infrastructure, by the job names the stack, the compose file and the
# Kubernetes ServiceMonitors give it. Their HTTP series are not the monitored service's: a
# report over every job would rank the alert sink's routes beside the service's and judge
# readiness on them. The exporter's host and GPU figures are read without a job matcher.
INFRASTRUCTURE_JOBS = ("prometheus", "alertmanager", JOB_EXPORTER, JOB_ALERT_SINK)
_REGEX_SPECIAL = re.compile(r"([.+*?()|\[\]{}^$\\])")


def job_regex(jobs: Sequence[str]) -> str:
    """A ``job=~"..."`` regex matching exactly ``jobs``, written for a PromQL string (a
    regex backslash is doubled there). Matches no job at all when ``jobs`` is empty."""
    if not jobs:
        return "^$"  # every scraped series has a job: nothing
    return "|".join(_REGEX_SPECIAL.sub(r"\\\\\1", job) for job in sorted(jobs))


def monitored_jobs(prometheus: Prometheus, start: float, end: float) -> list[str]:
    """The jobs Prometheus scraped during [start, end], inferwatch's own left out."""
    expr = f"group by (job) (max_over_time(up[{max(1, math.ceil(end - start))}s]))"
    try:
        result = prometheus.query(expr, at=end)
    except QueryError as exc:
        print(f"report: query failed: {exc}", file=sys.stderr)
        return []
    jobs = {series["metric"].get("job", "") for series in result}
    return sorted(jobs - set(INFRASTRUCTURE_JOBS) - {""})


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    job: str = ".*"  # a regex over the `job` label, as the dashboards' $job

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def range(self) -> str:
        """The whole window as a range selector, rounded up to whole seconds."""
        return f"{max(1, math.ceil(self.seconds))}s"

    @property
    def sel(self) -> str:
        return f'job=~"{self.job}"'


class Reader:
    def __init__(self, prometheus: Prometheus, window: Window, *, quiet: bool = False) -> None:
        self.prometheus = prometheus
        self.window = window
        self.quiet = quiet
        self.count = 0

    def _progress(self, expr: str) -> None:
        self.count += 1
        if not self.quiet:
            print(f"report: query {self.count}: {expr[:100]}", file=sys.stderr)

    def values(self, expr: str, by: Sequence[str], at: float | None = None) -> dict[Key, float]:
        """Instant query at the window's end (or ``at``): label values -> number; NaN dropped."""
        self._progress(expr)
        try:
            result = self.prometheus.query(expr, at=self.window.end if at is None else at)
        except QueryError as exc:
            print(f"report: query failed: {exc}", file=sys.stderr)
            return {}
        out: dict[Key, float] = {}
        for series in result:
            value = float(series["value"][1])
            if not math.isnan(value):
                out[tuple(series["metric"].get(label, "") for label in by)] = value
        return out

    def scalar(self, expr: str) -> float | None:
        found = self.values(expr, ())
        return found.get((), None)

    def delta(
        self, metric: str, by: Sequence[str], extra: str = "", restrict: str = ""
    ) -> dict[Key, float]:
        """Exact counter increase over the window: the value at the end minus the value at the
        start (0 for series born inside the window). ``increase()`` would extrapolate, and
        the counts must match what the load generator sent, request for request.
        ``restrict`` follows the selector, e.g. ``and on (job, instance) <targets>``."""
        labels = ", ".join(by)
        matchers = ", ".join(m for m in (self.window.sel, extra) if m)
        selected = f"{metric}{{{matchers}}}" + (f" {restrict}" if restrict else "")
        expr = f"sum by ({labels}) ({selected})"
        end = self.values(expr, by)
        start = self.values(expr, by, at=self.window.start)
        out = {}
        for key, value in end.items():
            before = start.get(key, 0.0)
            out[key] = value - before if value >= before else value  # a reset: count anew
        return out

    def series(self, expr: str, step: float) -> list[Series]:
        """A range query over the window: ``[{"metric": {...}, "values": [[t, "v"], ...]}]``."""
        self._progress(expr)
        w = self.window
        try:
            return self.prometheus.query_range(expr, w.start, w.end, step)
        except QueryError as exc:
            print(f"report: query failed: {exc}", file=sys.stderr)
            return []

    def alerts(self, step: float) -> list[dict[str, object]]:
        """Every alert firing at some point of the window, with when it was seen firing."""
        result = self.series('ALERTS{alertstate="firing"}', step)
        found = []
        for series in result:
            labels = {k: v for k, v in series["metric"].items() if k not in ("__name__",)}
            times = [float(t) for t, _ in series["values"]]
            found.append(
                {
                    "alertname": labels.pop("alertname", ""),
                    "severity": labels.pop("severity", ""),
                    "first_seen": min(times),
                    "last_seen": max(times),
                    "labels": labels,
                }
            )
        return sorted(found, key=lambda a: (a["first_seen"], a["alertname"]))
