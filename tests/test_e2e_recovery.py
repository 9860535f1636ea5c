"""Recovery on the local stack, with the demo and its model service really failing: a job that
leaks trips the 20-job memory-growth signal where a clean run of 20 jobs does not; a full
outage of the model service opens the breakers, whose alert fires and resolves once the
outage is over; and the report times an error burst to within one scrape interval of what
the clients saw.

One stack for the module (1 s scrapes and rule evaluations, ``for:`` scaled to 1/20, so
``for: 5m`` is 15 s; short Alertmanager timings). Jobs run one after another, as the leak
criterion's "20 sequential jobs" says.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferwatch.alertmanager import CHAT
from inferwatch.alerts.units import parse_duration
from inferwatch.alertsink.client import AlertSinkClient, Record
from inferwatch.cli.main import main
from inferwatch.stack import Stack
from inferwatch.stack.prometheus_api import Prometheus
from tests.support import scrape, wait_until
from tests.support.live import host_off_overlay
from tests.support.live import settings as fast_settings

pytestmark = pytest.mark.skipif(
    not (
        shutil.which("prometheus")
        and (shutil.which("alertmanager") or shutil.which("prometheus-alertmanager"))
    ),
    reason="needs the prometheus and prometheus-alertmanager Debian packages",
)

DEMO_JOB = "inferwatch-api"
JOB = {"kind": "audio", "prompt": "rain on a tin roof", "duration_seconds": 1}
GENERATE = {"prompt": "a kettle coming to the boil", "duration_seconds": 1}
GROWTH = "inferwatch_job_memory_growth_ratio"
RECORDED_GROWTH = "instance:inferwatch_job_memory_growth:ratio"
INCREASE = "inferwatch_job_memory_increase_bytes"
STATE = "inferwatch_upstream_circuit_state"
LEAK_WINDOW = 20  # jobs the growth ratio spans (JobMetrics' default)
LEAK_MIB = 4.0  # what each leaking job keeps: 80 MiB over the window, far beyond 10 %
GROWTH_WARNING = 0.10  # job_memory_growth's shipped warning
BURST_SCRAPES = 8  # scrapes of the demo the error burst lasts
POLL = 0.25


@dataclass
class Live:
    stack: Stack
    prometheus: Prometheus
    sink: AlertSinkClient
    demo: str
    instance: str  # the demo's instance label
    scrape_interval: float
    host_off: Path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    host_off = host_off_overlay(tmp_path_factory.mktemp("thresholds"))
    config = fast_settings(tmp_path_factory.mktemp("stack"))
    config = dataclasses.replace(
        config,
        thresholds=(*config.thresholds, host_off),
        group_wait="1s",
        group_interval="2s",
        # No GPU (nor NVML) here: the GPU collector's failure is not what is tested.
        exporter_collectors=("host",),
        embedded_backends=(),  # the demo's in-process cache and SQLite
    )
    with Stack(config) as stack:
        s = stack.settings
        yield Live(
            stack,
            Prometheus(s.url("prometheus"), timeout=5),
            AlertSinkClient(s.url("alert_sink")),
            s.url("demo"),
            f"{s.host}:{s.ports.demo}",
            float(parse_duration(s.scrape_interval)),
            host_off,
        )


# -- helpers ---------------------------------------------------------------------------------


def _received(record: Record) -> float:
    """The wall-clock second the sink recorded the notification."""
    return datetime.fromisoformat(record["received_at"].replace("Z", "+00:00")).timestamp()


def notified(
    live: Live, alert: str, status: str, after: float = 0.0, **labels: str
) -> list[Record]:
    """Notifications of ``alert`` at the chat receiver (every alert here is a warning) with
    ``labels``, received at or after the wall-clock second ``after``."""
    return [
        r
        for r in live.sink.notifications(receiver=CHAT, alertname=alert, status=status)
        if r["labels"].get("severity") == "warning"
        and all(r["labels"].get(k) == v for k, v in labels.items())
        and _received(r) >= after
    ]


def wait_notified(
    live: Live, alert: str, status: str, timeout: float, after: float = 0.0, **labels: str
) -> Record:
    found = wait_until(
        lambda: notified(live, alert, status, after, **labels),
        timeout,
        interval=POLL,
        message=lambda: (
            f"{status} {alert} {labels} at {CHAT}; Prometheus: {active(live, alert)}; sink: "
            f"{[(r['receiver'], r['alertname'], r['status']) for r in live.sink.notifications()]}"
        ),
    )
    return found[0]


def active(live: Live, alert: str) -> list[tuple[str, str]]:
    """``alert``'s pending and firing instances in Prometheus: (state, severity)."""
    return [
        (a["state"], a["labels"].get("severity", ""))
        for a in live.prometheus.alerts()
        if a["labels"]["alertname"] == alert
    ]


def scraped_after(live: Live, t: float) -> bool:
    found = live.prometheus.query(f'timestamp(up{{job="{DEMO_JOB}"}})')
    return bool(found) and float(found[0]["value"][1]) > t


def wait_scraped(live: Live) -> float:
    """Until Prometheus has scraped the demo after now; now."""
    now = time.time()
    wait_until(lambda: scraped_after(live, now), 10, interval=0.1, message="a scrape of the demo")
    return now


def run_job(client: httpx.Client) -> dict[str, Any]:
    created = client.post("/v1/jobs", json=JOB)
    assert created.status_code == 202, created.text
    url = created.json()["status_url"]
    ended: dict[str, Any] = wait_until(
        lambda: (j := client.get(url).json())["status"] in ("done", "partial", "failed") and j,
        timeout=30,
        message="the job to end",
    )
    return ended


class Background:
    """A thread that calls ``work(client)`` over and over until stopped."""

    def __init__(self, base_url: str, work: Any) -> None:
        self._base_url, self._work = base_url, work
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self._base_url, timeout=30) as client:
            while not self._stop.is_set():
                self._work(client)

    def __enter__(self) -> Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=40)


def recorded_growth(live: Live) -> float | None:
    found = live.prometheus.query(f'{RECORDED_GROWTH}{{instance="{live.instance}"}}')
    return float(found[0]["value"][1]) if found else None


def settled_growth(live: Live) -> float:
    """The demo's growth ratio once the recording rule shows the value it has now (no job
    runs meanwhile, so the gauge stays put)."""
    own = scrape(live.demo).value(GROWTH)
    assert own is not None, "no growth ratio: fewer jobs than its window"
    wait_until(
        lambda: recorded_growth(live) == own,
        15,
        interval=POLL,
        message=lambda: f"recorded growth {recorded_growth(live)} to be the demo's {own}",
    )
    return own


# -- the leak criterion ----------------------------------------------------------------------


def test_a_leaking_job_trips_the_20_job_growth_signal_and_a_clean_run_does_not(
    live: Live,
) -> None:
    with httpx.Client(base_url=live.demo, timeout=10) as client:
        # The first job's end is the base the next 20 are compared with.
        seen: list[tuple[str, str]] = []
        for _ in range(LEAK_WINDOW + 1):
            assert run_job(client)["status"] == "done"
            seen += active(live, "JobMemoryGrowth")
        clean = settled_growth(live)
        assert clean < GROWTH_WARNING, f"a clean run grew {clean:.1%}"
        assert not seen and not active(live, "JobMemoryGrowth")
        assert not live.sink.notifications(alertname="JobMemoryGrowth")

        before = scrape(live.demo)
        client.put("/admin/faults", json={"job_leak_mb": LEAK_MIB}).raise_for_status()
        try:
            leaking = time.time()
            for _ in range(LEAK_WINDOW):
                assert run_job(client)["status"] == "done"
        finally:
            client.delete("/admin/faults").raise_for_status()
        after = scrape(live.demo)
        # Every leaking job added at least a megabyte (the first bucket): the 4 MiB it kept.
        count = f"{INCREASE}_count"
        assert after.value(count, kind="audio") - before.value(count, kind="audio") == 20
        assert after.bucket(INCREASE, 1e6, kind="audio") == before.bucket(
            INCREASE, 1e6, kind="audio"
        )
        grown = settled_growth(live)
        # At least what the 20 jobs kept, over a base of at most today's resident memory.
        rss = after.value("process_resident_memory_bytes")
        assert rss is not None
        assert grown >= LEAK_WINDOW * LEAK_MIB * 2**20 / rss > GROWTH_WARNING
        fired = wait_notified(live, "JobMemoryGrowth", "firing", 60, instance=live.instance)
        assert fired["labels"]["job"] == DEMO_JOB and _received(fired) > leaking

        # The next job, run without the fault, gives the memory back: growth over the last
        # 20 jobs is negative again, and the alert resolves.
        freed = time.time()
        assert run_job(client)["status"] == "done"
    assert settled_growth(live) < GROWTH_WARNING
    wait_notified(live, "JobMemoryGrowth", "resolved", 30, freed, instance=live.instance)


# -- a full outage of the model service ------------------------------------------------------


def test_a_full_outage_fires_the_breaker_alert_and_it_resolves_once_over(live: Live) -> None:
    outcomes: list[str] = []

    def jobs(client: httpx.Client) -> None:
        outcomes.append(run_job(client)["status"])

    with httpx.Client(base_url=live.demo, timeout=10) as admin, Background(live.demo, jobs):
        wait_until(lambda: "done" in outcomes, 30, interval=POLL, message="a clean job")
        assert not live.sink.notifications(alertname="UpstreamCircuitOpen")
        on = time.time()
        admin.put("/admin/faults", json={"upstream_outage": True}).raise_for_status()
        try:
            for peer in ("llm", "tts"):
                record = wait_notified(live, "UpstreamCircuitOpen", "firing", 90, on, peer=peer)
                assert record["labels"]["job"] == DEMO_JOB
            # The jobs went on without their upstream steps: partial, not failed.
            during = list(outcomes)
        finally:
            off = time.time()
            admin.put("/admin/faults", json={"upstream_outage": False}).raise_for_status()
        for peer in ("llm", "tts"):
            wait_notified(live, "UpstreamCircuitOpen", "resolved", 90, off, peer=peer)
        m = scrape(live.demo)
    assert "partial" in during and "failed" not in outcomes
    for peer in ("llm", "tts"):
        assert m.value(STATE, peer=peer, state="closed") == 1
        assert m.value("inferwatch_upstream_circuit_transitions_total", peer=peer, state="open")
    assert not active(live, "UpstreamCircuitOpen")


# -- MTTR of an error burst -------------------------------------------------------------------


def report(live: Live, start: float, end: float, out: Path) -> dict[str, Any]:
    code = main(
        ["report", "--prometheus", live.prometheus.url, "--start", str(start), "--end",
         str(end), "--out", str(out), "--quiet", "--format", "json", "--no-charts",
         "--thresholds", str(live.host_off)]
    )  # fmt: skip
    assert code == 0
    data: dict[str, Any] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return data


def test_the_report_times_an_error_burst_within_a_scrape_interval(
    live: Live, tmp_path: Path
) -> None:
    # (wall-clock second the request was sent, second its answer came, status): the service
    # counted it somewhere in between, which bounds what the clients can know of the truth.
    answers: list[tuple[float, float, int]] = []
    lock = threading.Lock()

    def generate(client: httpx.Client) -> None:
        sent = time.time()
        try:
            status = client.post("/v1/audio/generate", json=GENERATE).status_code
        except httpx.TransportError:  # a connection the server closed: no answer to count
            return
        with lock:
            answers.append((sent, time.time(), status))

    def statuses_since(t: float) -> list[int]:
        with lock:
            return [s for _, at, s in answers if at > t]

    with httpx.Client(base_url=live.demo, timeout=10) as admin:
        with Background(live.demo, generate), Background(live.demo, generate):
            start = wait_scraped(live)
            wait_scraped(live)  # a whole clean interval before the burst
            admin.put("/admin/faults", json={"error_rate": 1.0}).raise_for_status()
            on = time.time()
            wait_until(lambda: 500 in statuses_since(on), 10, interval=0.05)
            for _ in range(BURST_SCRAPES):
                wait_scraped(live)
            admin.delete("/admin/faults").raise_for_status()
            off = time.time()
            # Until requests succeed again, then two whole clean intervals.
            wait_until(lambda: 200 in statuses_since(off), 10, interval=0.05)
            wait_scraped(live)
            wait_scraped(live)
        end = wait_scraped(live)
    with lock:
        failures = [(sent, at) for sent, at, s in answers if s == 500]
        others = {s for _, _, s in answers if s != 500}
        last_failure = max(at for _, at in failures)
        first_success = min(
            ((sent, at) for sent, at, s in answers if s == 200 and at > last_failure),
            key=lambda answer: answer[1],
        )
    assert others == {200}, others
    first_failure = min(at for _, at in failures)
    assert on - 1 < first_failure and last_failure < off + 1
    recovered = first_success[1]
    # The clients' view of the fault's duration: from the first failure the service counted
    # (after the earliest failed request was sent, by the time the first failure came back)
    # to the first success after the last failure (counted while that request was out).
    truth = (first_success[0] - first_failure, recovered - min(sent for sent, _ in failures))
    data = report(live, start, end + live.scrape_interval, tmp_path / "report")
    faults = data["figures"]["error_faults"]
    assert faults["threshold"] == 0.05  # APIHighErrorRate's warning
    assert set(faults["jobs"]) == {DEMO_JOB}
    (fault,) = faults["jobs"][DEMO_JOB]["episodes"]
    assert fault["recovered"] and first_failure - 1 < fault["start"] < recovered
    mttr = faults["jobs"][DEMO_JOB]["mttr_seconds"]
    assert mttr == fault["seconds"]
    # A sample's timestamp is when its scrape began; the counters were read by its end.
    (slowest,) = live.prometheus.query(
        f'max_over_time(scrape_duration_seconds{{job="{DEMO_JOB}"}}[{int(end - start) + 2}s])'
    )
    tolerance = live.scrape_interval + float(slowest["value"][1])
    off_by = max(truth[0] - mttr, mttr - truth[1], 0.0)
    assert off_by <= tolerance, (mttr, truth, tolerance)
