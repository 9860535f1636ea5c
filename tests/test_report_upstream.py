"""``inferwatch report`` on dependencies, jobs and cost, against the local stack: the demo's
jobs call its model service while that service fails 30 % of its calls, then not at all.

The report's figures must be the demo's own counters over the window, its cost the shipped
prices times the quantities it queried, and ``--check`` must name each breached criterion.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import httpx
import pytest

from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.cli.main import main
from inferwatch.stack import Stack
from inferwatch.stack.prometheus_api import Prometheus
from tests.support import Metrics, scrape, wait_until
from tests.support.live import host_off_overlay
from tests.support.live import settings as fast_settings

pytestmark = pytest.mark.skipif(
    not (
        shutil.which("prometheus")
        and (shutil.which("alertmanager") or shutil.which("prometheus-alertmanager"))
    ),
    reason="needs the prometheus and prometheus-alertmanager Debian packages",
)
JOB = {"kind": "audio", "prompt": "wind in the pines", "duration_seconds": 1}
DEMO_JOB = "inferwatch-api"


@dataclass
class Live:
    prometheus: Prometheus
    demo: str
    host_off: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    host_off = host_off_overlay(tmp_path_factory.mktemp("thresholds"))
    config = fast_settings(tmp_path_factory.mktemp("stack"))
    config = dataclasses.replace(
        config, thresholds=(*config.thresholds, host_off), embedded_backends=()
    )
    with Stack(config) as stack:
        yield Live(
            Prometheus(stack.settings.url("prometheus")), stack.settings.url("demo"), host_off
        )


def scraped_after(live: Live, t: float) -> bool:
    found = live.prometheus.query(f'timestamp(up{{job="{DEMO_JOB}"}})')
    return bool(found) and float(found[0]["value"][1]) > t


def run_jobs(client: httpx.Client, n: int) -> list[dict[str, object]]:
    ended = []
    for _ in range(n):
        url = client.post("/v1/jobs", json=JOB).json()["status_url"]
        ended.append(
            wait_until(
                lambda url=url: (
                    (j := client.get(url).json())["status"] in ("done", "partial") and j
                ),
                timeout=20,
            )
        )
    return ended


def window(live: Live, client: httpx.Client, jobs: int, **faults: object) -> tuple:
    """Run ``jobs`` jobs under ``faults`` between two scrapes; the demo's metrics before and
    after, and the window's bounds."""
    now = time.time()
    wait_until(lambda: scraped_after(live, now), 10, interval=0.2)
    start, before = time.time(), scrape(live.demo)
    client.put("/admin/faults", json=faults).raise_for_status()
    try:
        ended = run_jobs(client, jobs)
    finally:
        client.delete("/admin/faults").raise_for_status()
    after = scrape(live.demo)
    stopped = time.time()
    wait_until(lambda: scraped_after(live, stopped), 10, interval=0.2)
    return start, time.time(), before, after, ended


def report(live: Live, start: float, end: float, out: Path) -> int:
    return main(
        ["report", "--prometheus", live.prometheus.url, "--start", str(start), "--end",
         str(end), "--out", str(out), "--quiet", "--format", "json,md", "--no-charts",
         "--thresholds", str(live.host_off), "--check"]
    )  # fmt: skip


def delta(before: Metrics, after: Metrics, name: str, **labels: str) -> int:
    """How much a counter grew over the window. A series first created in the window, or not
    at all (a peer with no retries), grew from nothing, as the report's increase() counts it."""
    return round((after.value(name, **labels) or 0) - (before.value(name, **labels) or 0))


def test_dependencies_jobs_and_cost_in_the_report(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with httpx.Client(base_url=live.demo, timeout=10) as client:
        start, end, before, after, ended = window(
            live, client, 12, upstream_failure_rate=0.3, added_latency_seconds=0.05
        )
    out = tmp_path / "report"
    code = report(live, start, end, out)
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    figures = data["figures"]
    calls = "inferwatch_upstream_calls_total"
    peers = {p["peer"]: p for p in figures["upstream"]}
    assert set(peers) == {"llm", "tts"}
    for name, peer in peers.items():
        outcomes = {o: delta(before, after, calls, peer=name, outcome=o) for o in peer["outcomes"]}
        assert peer["outcomes"] == outcomes and peer["calls"] == 12
        retries = delta(before, after, "inferwatch_upstream_retries_total", peer=name)
        assert peer["retries"] == retries
        first_failed = outcomes.get("recovered", 0) + outcomes.get("failed", 0)
        if first_failed:
            assert peer["recovery_rate"] == outcomes.get("recovered", 0) / first_failed
    (jobs,) = figures["jobs"]
    statuses = [j["status"] for j in ended]
    assert jobs["outcomes"] == {
        k: v
        for k, v in {
            "complete": statuses.count("done"),
            "partial": statuses.count("partial"),
        }.items()
        if v
    }
    # Cost: the shipped prices times what the report queried, exactly.
    priced, prices = data["cost"], load_thresholds().cost.priced()
    hours = figures["cost"]["hours"]
    assert figures["cost"]["jobs"] == priced["jobs"] == 12
    total = sum(Fraction(hours[r]) * p for r, p in prices.items() if hours[r] is not None)
    assert priced["total"] == float(total) and priced["total"] > 0
    assert priced["per_1000_jobs"] == float(total / 12 * 1000)
    # Every criterion is named; the ones with no data in this window say so.
    lines = capsys.readouterr()
    named = {line.split(": ")[1].split(" ")[0] for line in (lines.out + lines.err).splitlines()
             if line.startswith(("ok: ", "FAILED: ", "n/a: "))}  # fmt: skip
    expected = ("max_error_rate", "max_latency_p95", "min_retry_recovery",
                "max_job_memory_increase", "max_db_query_p90", "min_cache_hit_ratio")  # fmt: skip
    assert set(expected) <= named, named
    failed = [r for r in data["check"] if not r["passed"]]
    assert code == (1 if failed else 0)
    for r in failed:
        assert f"FAILED: {r['criterion']}" in lines.err


def test_an_outage_fails_the_recovery_criterion_per_dependency(
    live: Live, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with httpx.Client(base_url=live.demo, timeout=10) as client:
        start, end, _, _, ended = window(live, client, 3, upstream_outage=True)
    assert {j["status"] for j in ended} == {"partial"}
    assert report(live, start, end, tmp_path / "report") == 1
    err = capsys.readouterr().err
    for peer in ("llm", "tts"):
        assert f"FAILED: min_retry_recovery [{peer}]: measured 0.00%, limit ≥ 60.00%" in err
    assert "not production-ready: " in err and "min_retry_recovery" in err
