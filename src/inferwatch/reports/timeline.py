"""The window as a timeline: series sampled step by step for the report's Trends and
Scalability sections (the arithmetic is :mod:`.trends`).

The step is never shorter than the scrape interval (estimated from the number of ``up``
samples in the window), so no sample is counted twice: repeated samples would inflate n
and narrow a trend's interval. Counters are read as their raw cumulative values at each
step and differenced, which is exact (``rate()`` would extrapolate); their step is two
scrape intervals, so every interval holds a fresh sample.

Concurrency is the mean number of requests in flight over an interval by Little's law:
the seconds the requests completed in it spent in the service, over its length. A gauge
sampled at scrapes (``http_server_active_requests``) would miss every request shorter than
the scrape interval.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from inferwatch.reports import trends
from inferwatch.reports.query import Reader

MAX_POINTS = 500  # per series: a day-long soak still gives a chart-sized series
HTTP = "http_server_request_duration_seconds"
INFERENCE = "inferwatch_inference_request_duration_seconds"
BATCH = "inferwatch_batch_requests"

Samples = dict[float, float]  # time -> value


def scrape_seconds(r: Reader) -> float:
    """The scrape interval of the window's targets, from how many scrapes it holds."""
    w = r.window
    scrapes = r.scalar(f"max(count_over_time(up{{{w.sel}}}[{w.range}]))")
    if not scrapes or scrapes < 2:
        return max(1.0, w.seconds)
    return w.seconds / scrapes


def steps(r: Reader) -> tuple[float, float]:
    """The steps for gauges and for counters (seconds)."""
    interval = scrape_seconds(r)
    floor = r.window.seconds / MAX_POINTS
    return max(1.0, interval, floor), max(1.0, 2 * interval, floor)


def _series(r: Reader, expr: str, step: float, by: tuple[str, ...]) -> dict[tuple, Samples]:
    out: dict[tuple, Samples] = {}
    for series in r.series(expr, step):
        key = tuple(series["metric"].get(label, "") for label in by)
        values = {float(t): float(v) for t, v in series["values"]}
        out[key] = {t: v for t, v in values.items() if not math.isnan(v)}
    return out


def _one(r: Reader, expr: str, step: float) -> Samples:
    return _series(r, expr, step, ()).get((), {})


def _counters(r: Reader, expr: str, step: float, by: tuple[str, ...] = ()) -> dict[tuple, Samples]:
    """A counter's steps and its value at the window's very end, which the steps miss when
    the window is no whole number of them (the figures elsewhere count up to the end)."""
    found = _series(r, expr, step, by)
    for key, value in r.values(expr, by).items():
        found.setdefault(key, {})[r.window.end] = value
    return found


def _rates(samples: Samples) -> list[tuple[float, float]]:
    """A counter's samples as its rate over each interval, at the interval's end."""
    times = sorted(samples)
    return [
        (t, trends.increments([samples[before], samples[t]])[0] / (t - before))
        for before, t in itertools.pairwise(times)
        if t > before
    ]


def _service(selector: str) -> str:
    """Only the targets that serve inferwatch's HTTP metrics: the service's processes."""
    return (
        f"and on (job, instance) group by (job, instance) (http_server_active_requests{selector})"
    )


def resource_trends(r: Reader) -> dict[str, Any]:
    """Trend lines of the service's CPU and resident memory and of the hosts' CPU."""
    w = r.window
    gauge_step, counter_step = steps(r)
    sel = f"{{{w.sel}}}"
    service = _service(sel)
    found: list[dict[str, Any]] = []

    def add(resource: str, unit: str, subject: str, points: list[tuple[float, float]]) -> None:
        line = trends.trend(points)
        if line is not None:
            found.append(
                {
                    "resource": resource,
                    "unit": unit,
                    "subject": subject,
                    "points": [list(p) for p in points],
                    **line,
                }
            )

    by = ("job", "instance")
    cpu = _series(
        r, f"sum by (job, instance) (process_cpu_seconds_total{sel} {service})", counter_step, by
    )
    for (job, instance), samples in sorted(cpu.items()):
        add("process_cpu", "cores", f"{job} {instance}", _rates(samples))
    rss = _series(
        r, f"sum by (job, instance) (process_resident_memory_bytes{sel} {service})", gauge_step, by
    )
    for (job, instance), samples in sorted(rss.items()):
        add("process_rss", "bytes", f"{job} {instance}", sorted(samples.items()))
    # The exporter's host figures, whatever their job (as the Resources table reads them).
    host = _series(
        r, "max by (instance) (inferwatch_host_cpu_usage_ratio)", gauge_step, ("instance",)
    )
    for (instance,), samples in sorted(host.items()):
        add("host_cpu", "ratio", instance, sorted(samples.items()))
    return {
        "step_seconds": {"gauges": gauge_step, "counters": counter_step},
        "confidence": trends.CONFIDENCE,
        "series": found,
    }


def _le(text: str) -> float:
    return math.inf if text == "+Inf" else float(text)


def _increases(times: list[float], samples: Samples) -> dict[float, float]:
    """A counter's increase up to each step from the step before. A series absent at the
    window's first step was born inside it and counts from 0 (as :meth:`Reader.delta`
    does); after a missing sample the increase lands on the next step that has one."""
    if not times:
        return {}
    last = samples.get(times[0], 0.0)
    out = {}
    for t in times[1:]:
        if t in samples:
            out[t] = trends.increments([last, samples[t]])[0]
            last = samples[t]
    return out


def _intervals(
    times: list[float], counters: dict[str, Samples], buckets: dict[float, Samples]
) -> list[tuple[float, dict[str, float], dict[float, float]]]:
    """``(seconds, {counter: increase}, {le: increase})`` between successive steps."""
    counted = {name: _increases(times, s) for name, s in counters.items()}
    bucketed = {le: _increases(times, s) for le, s in buckets.items()}
    return [
        (
            t - before,
            {name: found.get(t, 0.0) for name, found in counted.items()},
            {le: found.get(t, 0.0) for le, found in bucketed.items()},
        )
        for before, t in itertools.pairwise(times)
    ]


def _grid(r: Reader, step: float) -> list[float]:
    """Every step of the window (from ``up``: a series born inside the window has none
    before its birth), closed by the window's end: a last step less than half a step
    before it gives way to it, so that no interval is a sliver."""
    times = sorted(_one(r, f"count(up{{{r.window.sel}}})", step))
    end = r.window.end
    if times and end - times[-1] < step / 2:
        times[-1] = end
    elif not times or times[-1] < end:
        times.append(end)
    return times


def _histogram(r: Reader, metric: str, step: float) -> tuple[dict[str, Samples], dict]:
    sel = f"{{{r.window.sel}}}"
    counters = {
        "requests": _counters(r, f"sum({metric}_count{sel})", step).get((), {}),
        "busy_seconds": _counters(r, f"sum({metric}_sum{sel})", step).get((), {}),
    }
    buckets = {
        _le(le): samples
        for (le,), samples in _counters(
            r, f"sum by (le) ({metric}_bucket{sel})", step, ("le",)
        ).items()
    }
    return counters, buckets


def scalability(r: Reader) -> dict[str, Any]:
    """Throughput and latency against concurrency (all HTTP requests) and against the batch
    size the models ran (inference requests), interval by interval."""
    w = r.window
    _, step = steps(r)
    sel = f"{{{w.sel}}}"

    http_counters, http_buckets = _histogram(r, HTTP, step)
    times = _grid(r, step)
    concurrency = [
        trends.Interval(seconds, counts["busy_seconds"] / seconds, counts, found)
        for seconds, counts, found in _intervals(times, http_counters, http_buckets)
        if counts["requests"] > 0
    ]

    counters, buckets = _histogram(r, INFERENCE, step)
    counters["batches"] = _counters(r, f"sum({BATCH}_count{sel})", step).get((), {})
    counters["items"] = _counters(r, f"sum({BATCH}_sum{sel})", step).get((), {})
    batches = [
        trends.Interval(seconds, counts["items"] / counts["batches"], counts, found)
        for seconds, counts, found in _intervals(times, counters, buckets)
        if counts["batches"] > 0
    ]
    by_batch = trends.by_level(batches)
    for row in by_batch:  # the mean batch size of the band's batches, not of its intervals
        row["batch_size_avg"] = row["counts"]["items"] / row["counts"]["batches"]
    return {
        "step_seconds": step,
        "concurrency": trends.by_level(concurrency),
        "batch_size": by_batch,
    }
