"""A fleet on the local stack: 3 demo replicas and 2 exporters, each its own ``instance``.

A fault on one demo replica fires that replica's alert only, and the dashboards' queries
return one series per replica where they are per instance and one per job where they
aggregate.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from inferwatch.alertmanager import CHAT
from inferwatch.alertsink.client import AlertSinkClient
from inferwatch.dashboards import resources
from inferwatch.dashboards.prometheus import substitute
from inferwatch.stack import Ports, Stack, StackSettings
from inferwatch.stack.prometheus_config import JOB_API, JOB_EXPORTER
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

DEMOS = 3
EXPORTERS = 2
SCALE = 0.02  # as in tests/test_e2e_faults.py
POLL = 0.25
LEAK = "ProcessMemoryLeakSuspected"
HOST_SIGNALS_OFF = """\
signals:
  cpu_usage: {warning: null, critical: null}
  memory_usage: {warning: null, critical: null}
"""


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_runs(*lengths: int) -> list[int]:
    """First ports of runs of consecutive free ports, one run per length, none overlapping."""
    rng = random.Random()
    firsts: list[int] = []
    taken: set[int] = set()
    for length in lengths:
        while True:
            first = rng.randrange(20000, 60000)
            run = set(range(first, first + length))
            if not run & taken and all(_bindable(port) for port in run):
                firsts.append(first)
                taken |= run
                break
    return firsts


def fleet_settings(data_dir: Path) -> StackSettings:
    base = fast_settings(data_dir, for_scale=SCALE)
    host_off = data_dir / "host-signals-off.yaml"
    host_off.write_text(HOST_SIGNALS_OFF, encoding="utf-8")
    prometheus, alertmanager, sink, demo, exporter = _free_runs(1, 1, 1, DEMOS, EXPORTERS)
    return dataclasses.replace(
        base,
        ports=Ports(prometheus, alertmanager, sink, demo, exporter),
        demos=DEMOS,
        exporters=EXPORTERS,
        thresholds=(*base.thresholds, host_off),
        window_scale=SCALE,
        group_wait="1s",
        group_interval="2s",
        repeat_interval="1h",
        memory_growth_window=5.0,
        exporter_collectors=("host",),
        embedded_backends=(),
    )


class Prometheus:
    """The two calls this test makes of Prometheus's HTTP API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=5) as response:
            return json.load(response)["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/query", query=expr)["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts")["alerts"])


@dataclasses.dataclass
class Fleet:
    stack: Stack
    traffic: list[Traffic]
    prometheus: Prometheus
    sink: AlertSinkClient

    def instances(self, kind: str) -> list[str]:
        s = self.stack.settings
        return [f"{s.host}:{port}" for port in s.replica_ports(kind)]

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.prometheus.alerts()
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"
        ]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    stack = Stack(fleet_settings(tmp_path_factory.mktemp("fleet-stack")))
    with stack, ExitStack() as running:
        s = stack.settings
        # One client per replica, as a load balancer in front of them would spread it.
        traffic = [
            running.enter_context(Traffic(f"http://{s.host}:{port}", workers=1))
            for port in s.replica_ports("demo")
        ]
        yield Fleet(
            stack, traffic, Prometheus(s.url("prometheus")), AlertSinkClient(s.url("alert_sink"))
        )


def test_every_replica_is_its_own_instance(fleet: Fleet) -> None:
    names = [c.name for c in fleet.stack.components]
    assert [n for n in names if n.startswith("demo")] == ["demo", "demo-2", "demo-3"]
    assert [n for n in names if n.startswith("exporter")] == ["exporter", "exporter-2"]
    expected = {JOB_API: fleet.instances("demo"), JOB_EXPORTER: fleet.instances("exporter")}

    def up() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for series in fleet.prometheus.query('up{job=~"inferwatch-api|inferwatch-exporter"} == 1'):
            found.setdefault(series["metric"]["job"], []).append(series["metric"]["instance"])
        return {job: sorted(instances) for job, instances in found.items()}

    wait_until(lambda: up() == expected, 60, interval=POLL, message=lambda: f"up: {up()}")


def _instances(fleet: Fleet, expr: str) -> list[str]:
    return sorted(s["metric"].get("instance", "") for s in fleet.prometheus.query(substitute(expr)))


def test_dashboard_queries_give_one_series_per_replica(fleet: Fleet) -> None:
    demos, exporters = fleet.instances("demo"), fleet.instances("exporter")
    per_instance = {
        # The resources dashboard's service memory: the demo replicas' processes, each.
        f'{resources.SERVICE_RSS}{{job="{JOB_API}"}}': demos,
        # Its host CPU panel: one series per exporter (each reports its host).
        f"{resources.CPU}{resources.HOST}": exporters,
    }
    for expr, wanted in per_instance.items():
        wait_until(
            lambda e=expr, w=wanted: _instances(fleet, e) == w,
            60,
            interval=POLL,
            message=lambda e=expr: f"{e}: {_instances(fleet, e)}",
        )
    # Aggregates over the replicas: one series per route of the job, none per instance.
    aggregate = f'job_route:http_server_request_errors:ratio_rate5m{{job="{JOB_API}"}}'
    wait_until(lambda: fleet.prometheus.query(aggregate), 60, interval=POLL)
    series = fleet.prometheus.query(aggregate)
    routes = [s["metric"]["http_route"] for s in series]
    assert len(routes) == len(set(routes)), routes
    assert not [s for s in series if "instance" in s["metric"]], series


def test_a_fault_on_one_replica_fires_its_alert_only(fleet: Fleet) -> None:
    faulty = fleet.instances("demo")[1]
    traffic = fleet.traffic[1]
    wait_until(lambda: not fleet.firing(LEAK), 120, interval=POLL)
    fleet.sink.clear()
    traffic.set_faults(memory_leak_mb_per_second=4.0)
    try:
        record = fleet.sink.wait_for(LEAK, "firing", receiver=CHAT, timeout=180, interval=POLL)
        assert record["labels"]["instance"] == faulty
        assert [a["labels"]["instance"] for a in fleet.firing(LEAK)] == [faulty]
    finally:
        traffic.reset_faults()
    fleet.sink.wait_for(LEAK, "resolved", receiver=CHAT, timeout=180, interval=POLL)
    notified = {r["labels"]["instance"] for r in fleet.sink.notifications(alertname=LEAK)}
    assert notified == {faulty}
