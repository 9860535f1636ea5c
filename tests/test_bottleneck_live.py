"""The live bottleneck ranking against the local stack: the overview's "Likely bottleneck now"
panel names the injected constraint first, and ``inferwatch report`` over the same stretch
agrees.

One stack for the module (1 s scrapes and evaluations, range windows scaled to 2 %: a 5m
rate spans 6 s) under paced traffic; the dependency's latency is switched in the model
service the demo started, found among the test's child processes. A clean run first: no
component the test controls scores 1 or more. Then four runs, each injecting one constraint
(an exhausted connection pool, a cold cache, a slow dependency, a CPU hog), waiting until
the panel's query ranks it first at or past 1, holding it a few seconds, asking the report
over that stretch for its first likely candidate, and clearing it until nothing it controls
scores 1 any more.

The host's CPU is the machine's, not the test's: other work beside the test raises it, so
the clean run and the recoveries judge every component but the host's (as the clean run of
tests/test_e2e_faults.py leaves the host alerts out); the CPU run makes its own load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from inferwatch.alerts.signals import SATURATION, SATURATIONS
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.cli.main import main
from inferwatch.dashboards import build_all
from inferwatch.dashboards.prometheus import substitute
from inferwatch.stack import Stack
from inferwatch.stack.prometheus_api import Prometheus
from tests.support import wait_until
from tests.support.live import settings as fast_settings
from tests.support.load import cpu_hog
from tests.support.traffic import Traffic

pytestmark = pytest.mark.skipif(
    not (
        shutil.which("prometheus")
        and (shutil.which("alertmanager") or shutil.which("prometheus-alertmanager"))
    ),
    reason="needs the prometheus and prometheus-alertmanager Debian packages",
)

WINDOW_SCALE = 0.02  # [5m] -> [6s]
LIKELY = 1.0
CLEAN_SECONDS = 15.0
HOLD_SECONDS = 4.0  # the constraint stays on this long once named: the report's window
NAME_TIMEOUT = 60.0
QUIET_TIMEOUT = 60.0
POLL = 0.5
# 2.2 s per attempt lands in the client histogram's (2 s, 5 s] bucket: P95 4.85 s, 2.4 times
# the API's 2 s P95 warning; below the demo's 5 s attempt timeout, so slow, not failing.
UPSTREAM_LATENCY = 2.2
HOST = {s.component for s in SATURATIONS if s.host}
PANEL = next(
    panel
    for panel in build_all(load_thresholds())["overview"].panels()
    if panel.title == "Likely bottleneck now"
)
Row = tuple[str, str, float]  # component, resource, score


class PacedTraffic(Traffic):
    """The demo's traffic with a pause between rounds, so that on two cores the clients do not
    keep the host busy on their own, and without the client that gives up (its 499s are
    failed requests, not a constraint)."""

    pause = 0.2

    def _round(self, http: Any, worker: int, n: int) -> None:
        super()._round(http, worker, n)
        self._stop.wait(self.pause)

    def _give_up(self, prompt: str) -> None:
        pass


@dataclass
class Live:
    prometheus: Prometheus
    traffic: PacedTraffic
    upstreams: list[str]  # the model services the demo calls

    def ranking(self) -> list[Row]:
        """The panel's query as Grafana sends it with every job chosen, in its order."""
        (query,) = PANEL.queries
        result = self.prometheus.query(substitute(query.expr))
        return [
            (s["metric"]["component"], s["metric"]["resource"], float(s["value"][1]))
            for s in result
        ]

    def likely(self, *, host: bool = False) -> list[Row]:
        """Rows at or past 1; the host's only when ``host``."""
        return [row for row in self.ranking() if row[2] >= LIKELY and (host or row[0] not in HOST)]

    def recorded_after(self, t: float) -> bool:
        found = self.prometheus.query(f"max(timestamp({SATURATION}))")
        return bool(found) and float(found[0]["value"][1]) > t

    def set_upstream_latency(self, seconds: float) -> None:
        for url in self.upstreams:
            response = httpx.put(
                f"{url}/admin/faults", json={"latency_seconds": seconds}, timeout=10
            )
            response.raise_for_status()


def model_services() -> list[str]:
    """The URLs of the model services the demo started (one per worker), found among this
    test's own descendants: their port is bound before they start and never printed."""
    urls = []
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "inferwatch.demo.upstream" in child.cmdline():
                urls += [
                    f"http://{c.laddr.ip}:{c.laddr.port}"
                    for c in child.net_connections(kind="tcp")
                    if c.status == psutil.CONN_LISTEN
                ]
    return sorted(urls)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    config = dataclasses.replace(
        fast_settings(tmp_path_factory.mktemp("stack"), for_scale=WINDOW_SCALE),
        window_scale=WINDOW_SCALE,
        exporter_collectors=("host",),  # no GPU here
        embedded_backends=(),  # the demo's SQLite and in-process cache
    )
    with Stack(config) as stack, PacedTraffic(stack.settings.url("demo")) as traffic:
        upstreams = wait_until(model_services, 30, interval=0.2, message="the model service")
        yield Live(Prometheus(stack.settings.url("prometheus"), timeout=5), traffic, upstreams)
        traffic.reset_faults()


def report(live: Live, start: float, end: float, out: Path) -> list[dict[str, Any]]:
    """``inferwatch report`` over [start, end] once the scores of ``end`` are recorded: its
    bottleneck candidates."""
    wait_until(lambda: live.recorded_after(end), 10, interval=0.2)
    main(
        ["report", "--prometheus", live.prometheus.url, "--start", str(start), "--end",
         str(end), "--out", str(out), "--quiet", "--format", "json", "--no-charts"]
    )  # fmt: skip
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    candidates: list[dict[str, Any]] = data["bottlenecks"]
    return candidates


def wait_quiet(live: Live) -> None:
    wait_until(
        lambda: not live.likely(),
        QUIET_TIMEOUT,
        interval=POLL,
        message=lambda: f"no score >= 1 outside the host, ranking: {live.ranking()}",
    )


def test_clean_run_names_nothing_likely(live: Live, tmp_path: Path) -> None:
    expected = {"pool", "cache", "upstream", "model_queue", "cpu"}
    wait_until(
        lambda: expected <= {c for c, _, _ in live.ranking()},
        90,
        interval=1.0,
        message=lambda: f"a score for each of {sorted(expected)}: {live.ranking()}",
    )
    wait_quiet(live)
    start = time.time()
    seen: set[Row] = set()
    while time.time() - start < CLEAN_SECONDS:  # polled throughout, so a failure says when
        seen |= set(live.likely())
        time.sleep(1.0)
    end = time.time()
    assert not seen, f"likely during a clean run: {sorted(seen)}"
    candidates = report(live, start, end, tmp_path / "report")
    assert {c["component"] for c in candidates} >= expected - HOST
    assert [c for c in candidates if c["likely"] and c["component"] not in HOST] == []


@dataclass(frozen=True)
class Run:
    id: str
    component: str
    inject: Callable[[Live], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def demo_fault(live: Live, **faults: Any) -> Iterator[None]:
    live.traffic.set_faults(**faults)
    try:
        yield
    finally:
        live.traffic.reset_faults()


@contextlib.contextmanager
def slow_upstream(live: Live) -> Iterator[None]:
    live.set_upstream_latency(UPSTREAM_LATENCY)
    try:
        yield
    finally:
        live.set_upstream_latency(0.0)


RUNS = [
    Run("pool-exhaustion", "pool", lambda live: demo_fault(live, pool_exhaustion=True)),
    Run("cold-cache", "cache", lambda live: demo_fault(live, cold_cache=True)),
    Run("slow-upstream", "upstream", slow_upstream),
    Run("cpu-saturation", "cpu", lambda live: cpu_hog()),
]


@pytest.mark.parametrize("run", RUNS, ids=[r.id for r in RUNS])
def test_the_injected_constraint_is_named_first_and_the_report_agrees(
    live: Live, run: Run, tmp_path: Path
) -> None:
    wait_quiet(live)
    with run.inject(live):
        named = wait_until(
            lambda: (rows := live.ranking()) and rows[0][0] == run.component
            and rows[0][2] >= LIKELY and rows,
            NAME_TIMEOUT,
            interval=POLL,
            message=lambda: f"{run.component} first at >= 1: {live.ranking()}",
        )  # fmt: skip
        # The stretch the report is asked about, the fault still on: the panel keeps naming
        # the constraint first throughout.
        # A fault may press several resources of the component at once (a slow model service
        # slows both of its peers, llm and tts, equally): which of them leads is a tie.
        panel_likely = {r for c, r, score in named if c == run.component and score >= LIKELY}
        start = time.time()
        while time.time() - start < HOLD_SECONDS:
            rows = live.ranking()
            assert rows and rows[0][0] == run.component and rows[0][2] >= LIKELY, rows
            panel_likely |= {r for c, r, sc in rows if c == run.component and sc >= LIKELY}
            time.sleep(POLL)
        end = time.time()
    candidates = report(live, start, end, tmp_path / "report")
    likely = [c for c in candidates if c["likely"]]
    assert likely, candidates
    first = likely[0]
    assert first["component"] == run.component, (named, candidates)
    assert first["resource"] in panel_likely, (panel_likely, candidates)
    assert first["score"] >= LIKELY and first is candidates[0]
    # Cleared: the scores of what the test controls fall back below 1.
    wait_quiet(live)
