"""``inferwatch report`` against a real run: locust drives the demo on the local stack, and
the report must agree with what locust itself measured.

Two short headless runs share one stack: a clean one (exact counts, percentiles, all three
formats, --check passes, calibration) and one with the cold-cache fault switched on midway
(the bottleneck analysis names the cache first, --check fails on the hit ratio).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inferwatch.alerts.thresholds import load_thresholds
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
        and shutil.which("locust", path=str(Path(sys.executable).parent))
    ),
    reason="needs the prometheus and prometheus-alertmanager Debian packages and locust",
)

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
LOCUST = str(Path(sys.executable).parent / "locust")
DEMO_JOB = "inferwatch-api"
RUN_SECONDS = 15
MIN_SAMPLES = 30  # percentiles of a route with fewer requests are too coarse to compare
# At the stack's time scale a generation takes milliseconds, less than locust's own client
# overhead; a fixed added latency makes the service time dominate, as it does in production.
SERVICE_TIME = 0.32  # seconds: inside the (0.3, 0.5] bucket with room on both sides
# Locust rounds times above 100 ms to two significant digits and adds client overhead, so
# its P95 may sit a little outside the server-side bucket.
SLACK = 0.005


@dataclass
class Run:
    start: float
    end: float
    stats: list[dict[str, Any]]  # locust's final per-name statistics (its --json-file)


@dataclass
class Live:
    prometheus: Prometheus
    demo: str
    tmp: Path
    host_off: Path  # the thresholds overlay without the host's signals


def _scraped_after(prometheus: Prometheus, t: float) -> bool:
    found = prometheus.query(f'timestamp(up{{job="{DEMO_JOB}"}})')
    return bool(found) and float(found[0]["value"][1]) > t


def locust_run(live: Live, name: str, tags: list[str], users: int = 8) -> Run:
    # Start just after a scrape, end just after the scrape that follows locust's last
    # request: counter values at both instants then bracket exactly this run's requests.
    now = time.time()
    wait_until(lambda: _scraped_after(live.prometheus, now), 10, interval=0.2)
    start = time.time()
    prefix = live.tmp / name
    subprocess.run(
        [LOCUST, "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users),
         "-t", f"{RUN_SECONDS}s", "--stop-timeout", "10", "--host", live.demo,
         "--json-file", str(prefix), "--only-summary", "--tags", *tags],
        check=True, timeout=RUN_SECONDS + 40, cwd=live.tmp, capture_output=True,
    )  # fmt: skip
    stopped = time.time()
    wait_until(lambda: _scraped_after(live.prometheus, stopped), 10, interval=0.2)
    # The JSON is written after the last user stopped; the CSV lags by up to a second.
    stats = json.loads(prefix.with_name(f"{name}.json").read_text(encoding="utf-8"))
    return Run(start, time.time(), stats)


def locust_p95(row: dict[str, Any]) -> float:
    """Locust's own percentile over its rounded response times (its stats module, which
    is not imported here: importing locust monkey-patches the test process for gevent)."""
    total, allowed, seen = row["num_requests"], int(row["num_requests"] * 0.95), 0
    for ms, n in sorted(((int(k), n) for k, n in row["response_times"].items()), reverse=True):
        seen += n
        if total - seen <= allowed:
            return ms / 1000
    return 0.0


def report(live: Live, run: Run, out: Path, *extra: str) -> int:
    """``inferwatch report`` of ``run``, judged without the host's criteria (``extra`` may
    add overlays of its own after that one)."""
    return main(
        ["report", "--prometheus", live.prometheus.url, "--start", str(run.start),
         "--end", str(run.end), "--out", str(out), "--quiet",
         "--thresholds", str(live.host_off), *extra]
    )  # fmt: skip


# The host's CPU and memory belong to the machine, not to the run: other work beside the
# test decides them. Neither the stack's rules nor the report's criteria judge them here,
# so every check is of what the test controls (HostHighCPUUsage has its own test, with
# load it makes, in tests/test_e2e_faults.py).
HOST_SIGNALS_OFF = """\
signals:
  cpu_usage: {warning: null, critical: null}
  memory_usage: {warning: null, critical: null}
"""


@pytest.fixture(scope="module")
def host_off(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("thresholds") / "host-signals-off.yaml"
    path.write_text(HOST_SIGNALS_OFF, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, host_off: Path) -> Iterator[Live]:
    config = fast_settings(tmp_path_factory.mktemp("stack"))
    # The demo's in-process cache and SQLite, as the figures compared here were measured.
    config = dataclasses.replace(
        config, thresholds=(*config.thresholds, host_off), embedded_backends=()
    )
    with Stack(config) as stack:
        yield Live(
            Prometheus(stack.settings.url("prometheus")),
            stack.settings.url("demo"),
            tmp_path_factory.mktemp("load"),
            host_off,
        )


@pytest.fixture(scope="module")
def clean(live: Live) -> Iterator[Run]:
    traffic = Traffic(live.demo)
    traffic.set_faults(added_latency_seconds=SERVICE_TIME)
    try:
        yield locust_run(live, "clean", ["generate", "batch", "jobs", "websocket", "cache"])
    finally:
        traffic.reset_faults()


@pytest.fixture(scope="module")
def cold(live: Live, clean: Run) -> Run:
    traffic = Traffic(live.demo)
    timer = threading.Timer(3.0, lambda: traffic.set_faults(cold_cache=True))
    timer.start()  # injected while the load is running, as an incident would be
    try:
        return locust_run(live, "cold", ["generate", "cache"])
    finally:
        timer.join()
        traffic.reset_faults()


def test_report_agrees_with_locust(live: Live, clean: Run, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert report(live, clean, out, "--format", "json,md,html", "--check") == 0
    data = json.loads((out / "report.json").read_text())
    routes = {(r["method"], r["route"]): r for r in data["figures"]["routes"]}
    http = [row for row in clean.stats if row["method"] != "WS"]
    assert len(http) >= 5, http  # every HTTP scenario ran
    compared = 0
    for row in http:
        key = (row["method"], row["name"])
        assert key in routes, f"{key} missing from the report: {sorted(routes)}"
        assert routes[key]["requests"] == row["num_requests"], key
        if row["num_requests"] >= MIN_SAMPLES:
            low, high = routes[key]["p95_bucket"]
            p95 = locust_p95(row)
            assert low - SLACK <= p95 <= high * 1.1 + SLACK, (key, p95, low, high)
            compared += 1
    assert compared, "no route had enough requests to compare percentiles"
    sessions = next(r["num_requests"] for r in clean.stats if r["method"] == "WS")
    assert data["figures"]["websocket"]["attempts"] == sessions
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for route in ("/v1/audio/generate", "/v1/jobs/{job_id}/result"):
        assert route in markdown and route in page
    assert "Bottleneck analysis" in markdown
    for chart in data["charts"]:
        assert f'src="{chart}"' in page
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(tmp_path) not in page  # relative image paths: the folder can be moved


def test_check_fails_naming_the_breached_criterion(
    live: Live, clean: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text("production_readiness:\n  max_latency_p95: 1ms\n", encoding="utf-8")
    code = report(live, clean, tmp_path / "r", "--format", "json", "--check",
                  "--thresholds", str(strict))  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "FAILED: max_latency_p95 [POST /v1/audio/generate]" in err
    assert "not production-ready: max_latency_p95" in err


def test_cold_cache_is_named_first(
    live: Live, cold: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert report(live, cold, out, "--format", "json,md", "--check") == 1
    assert "FAILED: min_cache_hit_ratio" in capsys.readouterr().err
    data = json.loads((out / "report.json").read_text())
    first = data["bottlenecks"][0]
    assert first["kind"] == "cache_misses" and first["likely"], data["bottlenecks"]
    assert first["evidence"]["hit_ratio"] < 0.5


def test_calibrated_overlay_feeds_generate(live: Live, clean: Run, tmp_path: Path) -> None:
    overlay = tmp_path / "calibrated.yaml"
    assert report(live, clean, tmp_path / "r", "--format", "json", "--calibrate", str(overlay)) == 0
    thresholds = load_thresholds(overlay)
    p95 = thresholds.signals["api_latency_p95"]
    assert p95.warning is not None and p95.critical is not None and p95.warning < p95.critical
    assert float(p95.warning) < 2.0  # tighter than the shipped default, from the measurement
    assert main(["generate", "--thresholds", str(overlay), "--out", str(tmp_path / "gen")]) == 0
    assert (tmp_path / "gen" / "alerts" / "alert_rules.yaml").exists()
