"""The report's Trends and Scalability sections against a real run on the local stack.

One run, with the demo's memory leak switched on throughout: three stages of sequential
requests at batch sizes 1, 4 and 8, then a stage of 6 concurrent clients against slowed
requests, each stage apart from the next by idle seconds longer than the report's
intervals, so that no interval holds two stages. The report must find the leak as a rising
RSS trend (its interval excluding 0), a row per batch size with the exact batches and
inputs sent and a throughput that grows with the batch, and the concurrent stage as its own
band of requests in flight.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferwatch.cli.main import main
from inferwatch.stack import Stack
from inferwatch.stack.prometheus_api import Prometheus
from tests.support import wait_until
from tests.support.live import settings as fast_settings
from tests.support.traffic import Traffic

pytestmark = pytest.mark.skipif(
    not (
        shutil.which("prometheus")
        and (shutil.which("alertmanager") or shutil.which("prometheus-alertmanager"))
    ),
    reason="needs the prometheus and prometheus-alertmanager Debian packages",
)

DEMO_JOB = "inferwatch-api"
AUDIO = "/v1/audio/generate"
STREAM = "/v1/audio/stream"
BATCH_SIZES = (1, 4, 8)
STAGE_SECONDS = 6.0
IDLE_SECONDS = 5.0  # > the report's 2 s intervals plus a scrape: no interval spans 2 stages
LEAK_MIB_PER_SECOND = 4.0
MIB = 2**20
CLIENTS = 6  # in flight: 6 give or take one request's share of an interval: (4, 8]
SLOW = 0.2  # seconds added to each request of the concurrent stage
STEP = 2.0  # the report's interval for counters: two 1 s scrapes


@dataclass
class Run:
    start: float
    end: float
    sent: dict[int, int] = field(default_factory=dict)  # batch size -> requests
    stage_seconds: dict[int, float] = field(default_factory=dict)
    concurrent_requests: int = 0


def _scraped_after(prometheus: Prometheus, t: float) -> bool:
    found = prometheus.query(f'timestamp(up{{job="{DEMO_JOB}"}})')
    return bool(found) and float(found[0]["value"][1]) > t


def _wait_scraped_after(prometheus: Prometheus, t: float) -> None:
    wait_until(lambda: _scraped_after(prometheus, t), 20, interval=0.2)


def _sequential(demo: str, size: int, seconds: float) -> int:
    sent = 0
    body = {"prompt": "rain on a tin roof", "duration_seconds": 1.0, "batch_size": size}
    with httpx.Client(base_url=demo, timeout=10.0) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            response = client.post(AUDIO, json=body)
            assert response.status_code == 200, response.text
            sent += 1
    return sent


def _concurrent(demo: str, seconds: float) -> int:
    """``CLIENTS`` threads streaming (no model batches) until ``seconds`` have passed."""
    counts = [0] * CLIENTS
    deadline = time.monotonic() + seconds

    def one(i: int) -> None:
        with httpx.Client(base_url=demo, timeout=10.0) as client:
            while time.monotonic() < deadline:
                response = client.get(STREAM, params={"prompt": "rain", "chunks": 2})
                assert response.status_code == 200, response.text
                counts[i] += 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = fast_settings(tmp_path_factory.mktemp("stack"))
    config = dataclasses.replace(config, embedded_backends=())  # in-process cache, SQLite
    with Stack(config) as running:
        yield running


@pytest.fixture(scope="module")
def run(stack: Stack) -> Iterator[Run]:
    prometheus = Prometheus(stack.settings.url("prometheus"))
    demo = stack.settings.url("demo")
    traffic = Traffic(demo)
    traffic.set_faults(memory_leak_mb_per_second=LEAK_MIB_PER_SECOND)
    try:
        _wait_scraped_after(prometheus, time.time())  # leaking before the window opens
        found = Run(time.time(), 0.0)
        for size in BATCH_SIZES:
            began = time.monotonic()
            found.sent[size] = _sequential(demo, size, STAGE_SECONDS)
            found.stage_seconds[size] = time.monotonic() - began
            _wait_scraped_after(prometheus, time.time() + IDLE_SECONDS)
        traffic.set_faults(added_latency_seconds=SLOW)
        found.concurrent_requests = _concurrent(demo, STAGE_SECONDS)
        _wait_scraped_after(prometheus, time.time())
        found.end = time.time()
        yield found
    finally:
        traffic.reset_faults()


@pytest.fixture(scope="module")
def report(stack: Stack, run: Run, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report")
    code = main(
        ["report", "--prometheus", stack.settings.url("prometheus"), "--start", str(run.start),
         "--end", str(run.end), "--out", str(out), "--quiet", "--format", "json,md,html"]
    )  # fmt: skip
    assert code == 0
    data = json.loads((out / "report.json").read_text())
    data["_out"] = str(out)
    return data


def test_the_leak_is_a_rising_rss_trend(report: dict[str, Any]) -> None:
    lines = {t["resource"]: t for t in report["figures"]["trends"]["series"]}
    assert {"process_cpu", "process_rss"} <= set(lines), sorted(lines)
    rss = lines["process_rss"]
    low, high = rss["ci95_per_hour"]
    assert 0 < low <= rss["slope_per_hour"] <= high, rss["ci95_per_hour"]
    assert rss["ci_excludes_zero"] is True
    # The leak adds 1 MiB chunks at 4 MiB/s; the rest of the service's memory barely moves.
    leak_per_hour = LEAK_MIB_PER_SECOND * MIB * 3600
    assert 0.75 * leak_per_hour <= rss["slope_per_hour"] <= 1.25 * leak_per_hour
    assert rss["fit"]["n"] >= 30  # one sample per 1 s scrape over the window


def test_a_row_per_batch_size_with_its_throughput(report: dict[str, Any], run: Run) -> None:
    rows = {r["high"]: r for r in report["figures"]["scalability"]["batch_size"]}
    assert sorted(rows) == [1.0, 4.0, 8.0], rows
    for size in BATCH_SIZES:
        row = rows[float(size)]
        sent = run.sent[size]
        assert row["batch_size_avg"] == size
        assert row["counts"]["batches"] == sent  # sequential: each request its own batch
        assert row["counts"]["items"] == sent * size
        assert row["counts"]["requests"] == sent
        # The stage's intervals: its length, give or take the intervals at either end.
        stage = run.stage_seconds[size]
        assert stage - 2 * STEP <= row["seconds"] <= stage + 3 * STEP, (row["seconds"], stage)
        assert row["per_second"]["items"] == pytest.approx(sent * size / row["seconds"])
        assert row["latency_seconds"]["p95"] is not None
    # Batching amortises the model's fixed cost: more inputs per second at larger batches.
    throughput = [rows[float(s)]["per_second"]["items"] for s in BATCH_SIZES]
    assert throughput == sorted(throughput) and throughput[0] < throughput[-1], throughput


def test_the_concurrent_stage_is_its_own_band(report: dict[str, Any], run: Run) -> None:
    rows = report["figures"]["scalability"]["concurrency"]
    # Every interval with requests is in some band: their sum is the window's count.
    total = sum(r["counts"]["requests"] for r in rows)
    assert total == report["figures"]["totals"]["requests"]
    busy = rows[-1]
    assert (busy["low"], busy["high"]) == (4.0, 8.0), rows
    assert busy["level_avg"] > 4.0
    # Each of its requests took the added 0.2 s and a little more: the (0.2, 0.5] bucket.
    assert 0.2 < busy["latency_seconds"]["p95"] <= 0.5
    assert busy["counts"]["requests"] <= run.concurrent_requests
    assert busy["per_second"]["requests"] <= CLIENTS / SLOW * 1.1
    assert next(r["high"] for r in rows) == 1.0  # the sequential stages: less than one


def test_the_sections_are_written_with_their_charts(report: dict[str, Any]) -> None:
    out = Path(report["_out"])
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for title in ("## Trends", "## Scalability by concurrency", "## Scalability by batch size"):
        assert title in markdown
    assert report["section_charts"] == {
        "trends": "charts/trends.png",
        "scalability": "charts/scalability.png",
    }
    for chart in report["section_charts"].values():
        assert f"]({chart})" in markdown and f'src="{chart}"' in page
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| Process RSS |" in markdown and "rising" in markdown
