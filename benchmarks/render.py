"""Render time of one scrape, per format, for large registries: inferwatch's encoders next to
prometheus_client's ``generate_latest`` for the same series.

The registries hold what the HTTP middleware records: for each (method, route, status) a
request-duration histogram (25 buckets) and two body-size histograms (13 buckets), plus a
counter and a gauge per (method, route). Route counts are chosen so the registry has about
10k, 100k and 250k samples. Both renderers read the same registry in the same process; each
round times every (renderer, format) pair once, in an order rotated every round, and the
result is the median over rounds with the ratio to prometheus_client. Only CPU time of this
thread is counted (``time.thread_time``), so other processes on the machine do not inflate
it. Formats: the text format (``text/plain; version=0.0.4``), OpenMetrics, and OpenMetrics
with gzip (what Prometheus asks for), each compressed at the level its own /metrics uses.

    .venv/bin/python benchmarks/render.py [--rounds N] [--sizes 10000,100000,250000] [--markdown]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from inferwatch.exposition.encode import encode_openmetrics, encode_text
from inferwatch.metrics import Counter, Gauge, Histogram, buckets

METHODS = ("GET", "POST", "PUT", "DELETE")
STATUSES = ("200", "201", "404", "422", "500")
SAMPLES_PER_SERIES_SET = (25 + 2) + 2 * (13 + 2)  # one duration + two size histograms
SIZE_BUCKETS = tuple(float(4**i) for i in range(12))


def build_registry(samples: int) -> CollectorRegistry:
    """A registry shaped like the middleware's, with about ``samples`` samples."""
    registry = CollectorRegistry()
    labels = ("http_request_method", "http_route", "http_response_status_code")
    duration = Histogram(
        "http_server_request_duration_seconds", "Request duration.", labels,
        buckets=buckets.DURATION_SECONDS, registry=registry, unit="seconds",
    )  # fmt: skip
    sizes = [
        Histogram(f"http_server_{kind}_body_size_bytes", "Body size.", labels,
                  buckets=SIZE_BUCKETS, registry=registry, unit="bytes")
        for kind in ("request", "response")
    ]  # fmt: skip
    requests = Counter("app_requests", "Requests.", labels[:2], registry=registry)
    active = Gauge("app_active", "In flight.", labels[:2], registry=registry)
    per_route = len(METHODS) * (len(STATUSES) * SAMPLES_PER_SERIES_SET + 2)
    routes = max(1, samples // per_route)
    for r in range(routes):
        route = f"/v1/models/{{model}}/route{r}"
        for method in METHODS:
            requests.labels(method, route).inc(r + 1)
            active.labels(method, route).set(r % 3)
            for status in STATUSES:
                child = duration.labels(method, route, status)
                for i in range(5):
                    child.observe(0.003 * (i + 1) * (r % 7 + 1))
                for size in sizes:
                    size.labels(method, route, status).observe(1000.0 * (r + 1))
    return registry


def _openmetrics_gzip(
    encode: Callable[[CollectorRegistry], bytes], level: int
) -> Callable[[CollectorRegistry], bytes]:
    return lambda registry: gzip.compress(encode(registry), compresslevel=level)


RENDERERS: dict[str, dict[str, Callable[[CollectorRegistry], bytes]]] = {
    "text": {"prometheus_client": generate_latest, "inferwatch": encode_text},
    "openmetrics": {"prometheus_client": generate_openmetrics, "inferwatch": encode_openmetrics},
    "openmetrics+gzip": {
        # each at the level its own /metrics uses: prometheus_client gzip's default (9),
        # inferwatch 1 (see inferwatch.exposition.render)
        "prometheus_client": _openmetrics_gzip(generate_openmetrics, 9),
        "inferwatch": _openmetrics_gzip(encode_openmetrics, 1),
    },
}


def measure(registry: CollectorRegistry, rounds: int) -> dict[tuple[str, str], float]:
    pairs = [(fmt, who) for fmt in RENDERERS for who in RENDERERS[fmt]]
    times: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    for pair in pairs:  # warm-up, and a check that both sides agree
        RENDERERS[pair[0]][pair[1]](registry)
    for fmt in ("text", "openmetrics"):
        ours, theirs = RENDERERS[fmt]["inferwatch"], RENDERERS[fmt]["prometheus_client"]
        if ours(registry) != theirs(registry):
            raise SystemExit(f"{fmt}: inferwatch's output differs from prometheus_client's")
    for n in range(rounds):
        shift = n % len(pairs)
        for fmt, who in pairs[shift:] + pairs[:shift]:
            start = time.thread_time()
            RENDERERS[fmt][who](registry)
            times[(fmt, who)].append(time.thread_time() - start)
    return {pair: statistics.median(values) for pair, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sizes", default="10000,100000,250000")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        registry = build_registry(size)
        samples = generate_latest(registry).count(b"\n") - 2 * 5  # minus HELP/TYPE lines
        print(f"{samples} samples: measuring {args.rounds} rounds ...", file=sys.stderr)
        medians = measure(registry, args.rounds)
        for fmt in RENDERERS:
            ours, theirs = medians[(fmt, "inferwatch")], medians[(fmt, "prometheus_client")]
            rows.append((samples, fmt, ours * 1000, theirs * 1000, ours / theirs))
    header = ("samples", "format", "inferwatch ms", "prometheus_client ms", "ratio")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for samples, fmt, ours, theirs, ratio in rows:
            print(f"| {samples:,} | {fmt} | {ours:.0f} | {theirs:.0f} | {ratio:.2f}x |")
    else:
        print(f"{header[0]:>8} {header[1]:>17} {header[2]:>14} {header[3]:>21} {header[4]:>6}")
        for samples, fmt, ours, theirs, ratio in rows:
            print(f"{samples:>8} {fmt:>17} {ours:>14.1f} {theirs:>21.1f} {ratio:>6.2f}")


if __name__ == "__main__":
    main()
