"""The fast encoders give prometheus_client's exact bytes, for every format a scraper asks for."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from inferwatch.exposition import encode
from inferwatch.exposition.render import render
from inferwatch.http.instruments import HttpMetrics
from inferwatch.metrics import Counter, Gauge, Histogram

ROOT = Path(__file__).resolve().parent.parent
# What Prometheus 2.x and 3.x send; 3.x asks for allow-utf-8 escaping.
PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


class _Fixed:
    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("custom_temperature", "A custom collector.", value=21.5)


def fixture_registry() -> CollectorRegistry:
    """Every shape the encoders handle, with values that exercise the formatting."""
    registry = CollectorRegistry(target_info={"service": "demo", "version": "1.2"})
    jobs = Counter("jobs", "Jobs done.\nSecond line with a \\ backslash.", ["kind", "zone"],
                   registry=registry)  # fmt: skip
    jobs.labels("audio", "eu").inc(3)
    jobs.labels('quote " and \\ and \n newline', "日本").inc(0.25)
    Counter("restarts", "Unlabelled counter.", registry=registry).labels().inc(2_000_000)
    gauge = Gauge("queue_depth", 'Depth with a "quote".', ["queue"], registry=registry)
    gauge.labels("gpu").set(-1.5)
    gauge.labels("cpu").set(float("inf"))
    gauge.labels("idle").set(float("nan"))
    Gauge("unused", "Labelled, no child yet.", ["x"], registry=registry)
    latency = Histogram(
        "request_duration", "Latency.", ["a_first", "method", "zz_last"], registry=registry,
        buckets=[0.005, 0.1, 1.0, 2.5, 1e6], unit="seconds",
    )  # fmt: skip
    child = latency.labels("x", "GET", "y")
    for value in (0.001, 0.05, 0.05, 3.0, 2e6):
        child.observe(value)
    child.observe(0.2, exemplar={"trace_id": "abc123"})
    bucket_heavy = latency.labels("x", "POST", "y")
    for _ in range(3):
        bucket_heavy.observe(0.5)
    Histogram("plain", "No labels.", buckets=[1, 2], registry=registry).labels().observe(1.5)
    prometheus_client.Counter("pc_total", "prometheus_client counter.", ["l"],
                              registry=registry).labels("v").inc()  # fmt: skip
    prometheus_client.Summary("pc_summary", "A summary.", registry=registry).observe(4)
    prometheus_client.Info("pc_build", "Build info.", registry=registry).info({"rev": "1"})
    registry.register(_Fixed())
    http = HttpMetrics(registry)
    http.request_duration.labels("GET", "/v1/items/{id}", "200", "").observe(0.02)
    http.request_duration.labels("POST", "/v1/gen", "500", "RuntimeError").observe(1.2)
    return registry


@pytest.fixture
def registry() -> CollectorRegistry:
    return fixture_registry()


def _without_created(body: bytes) -> bytes:
    """prometheus_client's own metrics carry a creation time that changes between renders."""
    return b"".join(line for line in body.splitlines(keepends=True) if b"_created" not in line)


def test_text_is_byte_identical_to_prometheus_client(registry: CollectorRegistry) -> None:
    ours, theirs = encode.encode_text(registry), generate_latest(registry)
    assert _without_created(ours) == _without_created(theirs)
    assert b'jobs_total{kind="quote \\" and \\\\ and \\n newline",zone="\xe6\x97\xa5' in ours


def test_openmetrics_is_byte_identical_with_exemplars(registry: CollectorRegistry) -> None:
    ours, theirs = encode.encode_openmetrics(registry), generate_openmetrics(registry)
    assert _without_created(ours) == _without_created(theirs)
    assert b'# {trace_id="abc123"} 0.2 ' in ours
    assert ours.endswith(b"# EOF\n") and ours.count(b"# EOF") == 1


@pytest.mark.parametrize("accept", [PROMETHEUS_2, PROMETHEUS_3, "text/plain", "",
    "application/openmetrics-text;version=1.0.0;escaping=dots",
    "text/plain;version=1.0.0;escaping=values"])  # fmt: skip
def test_every_negotiated_format_matches_the_reference(
    registry: CollectorRegistry, accept: str
) -> None:
    reference, content_type = prometheus_client.exposition.choose_encoder(accept)
    ours = render(registry, accept=accept, compress=False)
    assert dict(ours.headers)["Content-Type"] == content_type
    assert _without_created(ours.body) == _without_created(reference(registry))


def test_output_parses_and_passes_promtool(registry: CollectorRegistry, tmp_path: Path) -> None:
    text = encode.encode_text(registry).decode()
    families = {family.name: family for family in parse_text(text)}
    duration = families["request_duration_seconds"]
    counts = {s.labels["le"]: s.value for s in duration.samples
              if s.name.endswith("_bucket") and s.labels["method"] == "GET"}  # fmt: skip
    assert counts == {"0.005": 1, "0.1": 3, "1.0": 4, "2.5": 4, "1e+06": 5, "+Inf": 6}
    om = {family.name: family for family in parse_om(encode.encode_openmetrics(registry).decode())}
    assert om["jobs"].samples[0].value == 3
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by scripts/bootstrap.sh"
    check = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=60)  # fmt: skip
    # promtool lints names too (e.g. counters without _total); the format itself must parse.
    assert b"error while linting" not in check.stderr, check.stderr.decode()


def test_removed_and_relabelled_children_render_as_they_are_now(
    registry: CollectorRegistry,
) -> None:
    jobs = Counter("churn", "Children come and go.", ["id"], registry=registry)
    for round_ in range(3):
        for i in range(200):
            jobs.labels(f"{round_}-{i}").inc()
        encode.encode_text(registry)
        for i in range(200):
            jobs.remove(f"{round_}-{i}")
    jobs.labels("last").inc(7)
    assert _without_created(encode.encode_text(registry)) == _without_created(
        generate_latest(registry)
    )
    assert len(encode._layout(jobs).labels) <= 201 + 64  # label strings of removed children go


def test_output_does_not_depend_on_the_hash_seed() -> None:
    """Two interpreters with different hash seeds render the fixture registry identically."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.test_exposition_encode import fixture_registry;"
        "from inferwatch.exposition.encode import encode_openmetrics;"
        "body = encode_openmetrics(fixture_registry());"
        "sys.stdout.buffer.write(b''.join(l for l in body.splitlines(True)"
        " if b'_created' not in l and b'trace_id' not in l))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script, str(ROOT)], capture_output=True, check=True,
            timeout=120, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
        ).stdout
        for seed in ("1", "2")
    }  # fmt: skip
    assert len(outputs) == 1
    assert next(iter(outputs)).count(b"\n") > 50


@pytest.mark.parametrize("count", [0, 1, 999_999, 1_000_000, 1_234_567, 10**12])
def test_bucket_counts_are_formatted_as_prometheus_client_formats_floats(count: int) -> None:
    from prometheus_client.utils import floatToGoString

    assert encode._count(count) == floatToGoString(count)
