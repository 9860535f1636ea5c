"""The HA topology (``inferwatch stack up --ha``) on loopback: two Prometheus replicas, two
clustered Alertmanagers, VictoriaMetrics as the long-term store, all real programs.

One stack for the module, with the fast settings of :mod:`tests.support.live`, alert
timings scaled as in the end-to-end fault tests, and steady traffic. The alert sink
forwards every notification it receives to a counter in this process, which keeps each
delivery as it came: a notification Alertmanager sends twice arrives twice there, where
the sink itself would fold the repeat into one record.

What the tests show, in order: an error burst notifies once per alert group while every
part is up; a second fault still fires and resolves at the receiver while one Prometheus
and one Alertmanager are SIGKILLed (duplicates counted and reported, not asserted away:
Alertmanager promises at-least-once delivery across a failover), and both rejoin once
restarted; VictoriaMetrics keeps one sample stream per series of the pair; and ``inferwatch
report`` gives the same figures against VictoriaMetrics as against a Prometheus replica.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from inferwatch.alertmanager import PAGER
from inferwatch.cli.main import main
from inferwatch.stack import Stack, StackSettings
from inferwatch.stack.ha import cluster_peers
from inferwatch.stack.prometheus_config import JOB_API, JOB_LONG_TERM
from inferwatch.stack.settings import HAPorts
from tests.support import wait_until
from tests.support.live import settings as fast_settings
from tests.support.traffic import Traffic

pytestmark = pytest.mark.skipif(
    not (
        shutil.which("prometheus")
        and (shutil.which("alertmanager") or shutil.which("prometheus-alertmanager"))
        and shutil.which("victoria-metrics")
    ),
    reason="needs the prometheus, prometheus-alertmanager and victoria-metrics Debian packages",
)

# As in tests/test_e2e_faults.py: `for: 5m` -> 6 s, `[5m]` -> `[6s]`.
SCALE = 0.02
POLL = 0.25
# How long the second Alertmanager waits for the first one's notification (15 s in
# production): long enough for the first one's delivery to a receiver slowed by a busy
# machine, and for its notification log to gossip over loopback several times (at 1 s a
# second delivery of the same group was seen with two test workers on two cores), and well
# below the group interval, as 15 s is below the production 2m. With a peer
# timeout longer than the group interval the second one decides on a group state the first
# has already replaced, and sends a notification of it again (seen here at 3 s against 2 s).
PEER_TIMEOUT = "2s"
# The host's CPU and memory belong to the machine, not to the stack (see test_report_live).
HOST_SIGNALS_OFF = """\
signals:
  cpu_usage: {warning: null, critical: null}
  memory_usage: {warning: null, critical: null}
"""
ERROR_BURST = "APIHighErrorRate"
COLD_CACHE = "CacheLowHitRate"
KILLED = ("prometheus", "alertmanager")
LOAD_SECONDS = 5.0  # of requests in the window the reports compare


class Notifications:
    """Every webhook body the alert sink forwards, as received (one per notification)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: list[dict[str, Any]] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with received._lock:
                    received._bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def clear(self) -> None:
        with self._lock:
            self._bodies.clear()

    def of(self, alertname: str) -> list[dict[str, Any]]:
        """The notifications of groups of ``alertname``, oldest first."""
        with self._lock:
            return [b for b in self._bodies if b["groupLabels"].get("alertname") == alertname]

    def has(self, alertname: str, status: str) -> bool:
        return any(
            a["status"] == status and a["labels"]["alertname"] == alertname
            for body in self.of(alertname)
            for a in body["alerts"]
        )


def tally(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Notifications per (group, status), which Alertmanager sent them (its externalURL
    names its port), and duplicates: notifications that told the receiver nothing new, each
    of their alerts already delivered in that state for that group. A group's later
    notification that adds an alert or resolves one is an update, as one Alertmanager alone
    sends it; one that repeats what was said is what two Alertmanagers that failed to
    share their notification log send."""
    told: dict[str, set[tuple[str, str]]] = {}
    duplicates = 0
    for body in bodies:
        states = {(a["fingerprint"], a["status"]) for a in body["alerts"]}
        known = told.setdefault(f"{body['receiver']} {body['groupKey']}", set())
        if states <= known:
            duplicates += 1
        known |= states
    return {
        "notifications": dict(Counter(f"{b['groupKey']} {b['status']}" for b in bodies)),
        "duplicates": duplicates,
        "senders": dict(Counter(b["externalURL"] for b in bodies)),
    }


def _free_ports(count: int, taken: set[int]) -> list[int]:
    """``count`` free ports, none of ``taken``: all bound at once, so all distinct."""
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            if sock.getsockname()[1] in taken:
                sock.close()
                continue
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ha_settings(data_dir: Path, forward: str) -> StackSettings:
    base = fast_settings(data_dir, for_scale=SCALE)
    host_off = data_dir / "host-signals-off.yaml"
    host_off.write_text(HOST_SIGNALS_OFF, encoding="utf-8")
    taken = {port for _, port in base.ports.items()}
    return dataclasses.replace(
        base,
        ha=True,
        ha_ports=HAPorts(*_free_ports(len(HAPorts.__dataclass_fields__), taken)),
        peer_timeout=PEER_TIMEOUT,
        thresholds=(*base.thresholds, host_off),
        window_scale=SCALE,
        # Long enough that the route alerts of one burst, which cross their threshold
        # within a few evaluations of each other, go out in the group's first notification.
        group_wait="3s",
        group_interval="5s",
        # No repeat within the module: a second delivery of the same content is a duplicate.
        repeat_interval="1h",
        # How soon Prometheus re-sends firing alerts, so a restarted Alertmanager hears of
        # them within seconds.
        alert_resend_delay="2s",
        exporter_collectors=("host",),
        embedded_backends=(),
        alert_sink_forward=(forward,),
    )


@dataclasses.dataclass
class HA:
    stack: Stack
    traffic: Traffic
    received: Notifications
    findings: dict[str, Any]

    @property
    def settings(self) -> StackSettings:
        return self.stack.settings

    def get(self, base: str, path: str, **params: str | float) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{base}{path}{query}", timeout=5) as response:
            return json.load(response)["data"]

    def alerts(self, replica: str) -> list[dict[str, Any]]:
        try:
            return list(self.get(self.settings.url(replica), "/api/v1/alerts")["alerts"])
        except OSError:
            return []

    def state(self, alertname: str, replica: str = "prometheus_2") -> set[str]:
        return {a["state"] for a in self.alerts(replica) if a["labels"]["alertname"] == alertname}

    def wait_quiet(self, *names: str) -> None:
        """Until no replica has any of ``names`` pending or firing."""

        def active() -> list[str]:
            return [
                f"{n} ({r}: {sorted(self.state(n, r))})"
                for n in names
                for r in ("prometheus", "prometheus_2")
                if self.state(n, r)
            ]

        wait_until(lambda: not active(), 120, interval=POLL, message=lambda: f"quiet: {active()}")

    def wait_received(self, alertname: str, status: str, timeout: float = 90) -> None:
        wait_until(
            lambda: self.received.has(alertname, status),
            timeout,
            interval=POLL,
            message=lambda: (
                f"{status} {alertname}: Prometheus 2 has {sorted(self.state(alertname))}; "
                f"received {[(b['receiver'], b['status']) for b in self.received.of(alertname)]}"
            ),
        )


@pytest.fixture(scope="module")
def ha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HA]:
    received = Notifications()
    stack = Stack(ha_settings(tmp_path_factory.mktemp("ha-stack"), received.url))
    findings: dict[str, Any] = {}
    try:
        with stack, Traffic(stack.settings.url("demo")) as traffic:
            yield HA(stack, traffic, received, findings)
    finally:
        received.close()
        print(f"\nHA findings: {json.dumps(findings, indent=1, sort_keys=True)}")


def test_every_part_runs_and_reports(ha: HA) -> None:
    s = ha.settings
    names = [c.name for c in ha.stack.components]
    for part in ("prometheus", "prometheus-2", "alertmanager", "alertmanager-2"):
        assert part in names
    assert "victoria-metrics" in names
    urls = dict(ha.stack.urls())
    assert urls["VictoriaMetrics (long-term store)"] == f"{s.url('victoria_metrics')}/vmui"
    assert urls["Prometheus (replica 2)"] == s.url("prometheus_2")
    # Both replicas scrape the same targets: every part of the pair, and the store.
    wait_until(lambda: (st := ha.stack.status()) and st.all_up, 60, interval=POLL)
    for replica in ("prometheus", "prometheus_2"):
        targets = ha.get(s.url(replica), "/api/v1/targets", state="active")["activeTargets"]
        jobs = Counter(t["labels"]["job"] for t in targets)
        assert jobs["prometheus"] == 2 and jobs["alertmanager"] == 2, jobs
        assert jobs[JOB_LONG_TERM] == 1, jobs
    for alertmanager in ("alertmanager", "alertmanager_2"):
        wait_until(lambda a=alertmanager: cluster_peers(s.url(a)) == 2, 30, interval=POLL)
    line = ha.stack.status().line()
    assert line.endswith(
        "prometheus 2/2 ready · alertmanager 2/2 up, cluster peers 2/2 · victoria-metrics up"
    ), line


def test_error_burst_notifies_once_per_group(ha: HA) -> None:
    ha.wait_quiet(ERROR_BURST)
    ha.received.clear()
    ha.traffic.set_faults(error_rate=0.5)
    try:
        wait_until(lambda: _pager(ha, ERROR_BURST, "firing"), 90, interval=POLL)
        # Both replicas fire it, and both Alertmanagers hear of it from both.
        wait_until(lambda: ha.state(ERROR_BURST, "prometheus") == {"firing"}, 30, interval=POLL)
        wait_until(lambda: ha.state(ERROR_BURST, "prometheus_2") == {"firing"}, 30, interval=POLL)
    finally:
        ha.traffic.reset_faults()
    wait_until(lambda: _pager(ha, ERROR_BURST, "resolved"), 90, interval=POLL)
    ha.wait_quiet(ERROR_BURST)
    bodies = ha.received.of(ERROR_BURST)
    found = tally(bodies)
    ha.findings["error_burst_both_up"] = found
    # The pager's group, and the chat's where the warning crossed its lower threshold a
    # moment before the critical (inhibition starts only once the critical fires).
    firing = [b for b in bodies if b["status"] == "firing"]
    # One alert per route from the pair, not one per replica.
    # One alert per route from the pair, not one per replica: no notification names a
    # route twice.
    for body in firing:
        assert not [a for a in body["alerts"] if "replica" in a["labels"]], body["alerts"]
        routes = [a["labels"]["http_route"] for a in body["alerts"]]
        assert len(routes) == len(set(routes)), routes
    # Each firing notification of the group told something new (the first one the burst's
    # alerts, any later one an alert that joined the group): none came from both sides.
    assert found["duplicates"] == 0, found


def test_killed_prometheus_and_alertmanager_lose_no_notification(ha: HA) -> None:
    s = ha.settings
    ha.wait_quiet(COLD_CACHE, ERROR_BURST, "TargetDown")
    ha.received.clear()
    ha.traffic.set_faults(cold_cache=True)
    try:
        # Killed while the alert is pending: no notification of it can have left before, so
        # the one that arrives went through the surviving replica and Alertmanager.
        wait_until(lambda: ha.state(COLD_CACHE), 90, interval=POLL)
        for name in KILLED:
            ha.stack.kill_component(name)
        killed = time.time()
        wait_until(lambda: _pager(ha, COLD_CACHE, "firing"), 90, interval=POLL)
        fired = time.time()
    finally:
        ha.traffic.reset_faults()
    off = time.time()
    wait_until(lambda: _pager(ha, COLD_CACHE, "resolved"), 90, interval=POLL)
    resolved = time.time()
    firing = _pager(ha, COLD_CACHE, "firing")
    assert firing, ha.received.of(COLD_CACHE)
    survivor = f":{s.ha_ports.alertmanager_2}"
    assert {b["externalURL"][-len(survivor) :] for b in firing} == {survivor}
    survivors = ha.stack.supervisor.running()
    assert "prometheus-2" in survivors and "alertmanager-2" in survivors
    assert not set(KILLED) & set(survivors)
    # The survivors see their peers gone: TargetDown pages for each, and the cluster shrinks.
    wait_until(lambda: cluster_peers(s.url("alertmanager_2")) == 1, 60, interval=POLL)
    ha.wait_received("TargetDown", "firing")
    ha.findings["failover"] = {
        "killed": list(KILLED),
        "kill_to_firing_s": round(fired - killed, 1),
        "fault_off_to_resolved_s": round(resolved - off, 1),
        "cold_cache": tally(ha.received.of(COLD_CACHE)),
        "target_down": tally(ha.received.of("TargetDown")),
    }

    for name in reversed(KILLED):  # the Alertmanager first: the restarted Prometheus sends to it
        ha.stack.start_component(name)
    wait_until(
        lambda: [cluster_peers(s.url(a)) for a in ("alertmanager", "alertmanager_2")] == [2, 2],
        60,
        interval=POLL,
        message=lambda: (
            f"cluster peers {[cluster_peers(s.url(a)) for a in ('alertmanager', 'alertmanager_2')]}"
        ),
    )

    def restarted_targets() -> list[str]:
        targets = ha.get(s.url("prometheus"), "/api/v1/targets", state="active")["activeTargets"]
        return sorted(f"{t['labels']['job']} {t['health']}" for t in targets)

    wait_until(
        lambda: (found := restarted_targets()) and all(t.endswith(" up") for t in found),
        60,
        interval=POLL,
        message=lambda: f"targets of the restarted Prometheus: {restarted_targets()}",
    )
    ha.wait_received("TargetDown", "resolved")
    ha.findings["failover"]["target_down"] = tally(ha.received.of("TargetDown"))


def _pager(ha: HA, alertname: str, status: str) -> list[dict[str, Any]]:
    """The pager's notifications of ``alertname`` with this status (the critical's group)."""
    return [
        b for b in ha.received.of(alertname) if b["receiver"] == PAGER and b["status"] == status
    ]


def _vm_and_prometheus(ha: HA, expr: str, at: float) -> tuple[list[Any], list[Any]]:
    s = ha.settings
    store = ha.get(s.url("victoria_metrics"), "/api/v1/query", query=expr, time=at)["result"]
    replica = ha.get(s.url("prometheus_2"), "/api/v1/query", query=expr, time=at)["result"]
    return store, replica


def _vm_has_samples_after(ha: HA, t: float) -> bool:
    expr = f'timestamp(up{{job="{JOB_API}"}})'
    found = ha.get(ha.settings.url("victoria_metrics"), "/api/v1/query", query=expr)["result"]
    return bool(found) and float(found[0]["value"][1]) > t


def test_victoria_metrics_keeps_one_sample_stream_per_series(ha: HA) -> None:
    window = 30
    expr = f'count_over_time(up{{job="{JOB_API}"}}[{window}s])'

    def scraped_whole_window() -> bool:
        found = ha.get(ha.settings.url("prometheus_2"), "/api/v1/query", query=expr)["result"]
        return bool(found) and float(found[0]["value"][1]) >= window - 1

    wait_until(scraped_whole_window, window + 30, interval=POLL)
    at = time.time()
    wait_until(lambda: _vm_has_samples_after(ha, at), 30, interval=POLL)
    store, replica = _vm_and_prometheus(ha, expr, at)
    assert len(store) == 1 and len(replica) == 1, (store, replica)
    stored, scraped = float(store[0]["value"][1]), float(replica[0]["value"][1])
    # One replica's scrapes, give or take the one on either edge of the window; both
    # replicas' samples would be twice as many.
    assert abs(stored - scraped) <= 1, (stored, scraped)
    assert stored < 1.5 * scraped
    # The raw samples VictoriaMetrics exports for the series: one stream, one sample per
    # scrape interval.
    params = {"match[]": f'up{{job="{JOB_API}"}}', "start": at - window, "end": at}
    url = f"{ha.settings.url('victoria_metrics')}/api/v1/export?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    assert len(lines) == 1, [line["metric"] for line in lines]
    assert "replica" not in lines[0]["metric"]
    exported = len(lines[0]["values"])
    assert abs(exported - scraped) <= 1, (exported, scraped)
    ha.findings["dedup"] = {
        "window_s": window,
        "victoria_metrics_count_over_time": stored,
        "prometheus_2_count_over_time": scraped,
        "victoria_metrics_exported_samples": exported,
        "series": len(lines),
    }


def _scraped_by_both_after(ha: HA, t: float) -> bool:
    expr = f'timestamp(up{{job="{JOB_API}"}})'
    for replica in ("prometheus", "prometheus_2"):
        found = ha.get(ha.settings.url(replica), "/api/v1/query", query=expr)["result"]
        if not found or float(found[0]["value"][1]) <= t:
            return False
    return True


def _report(
    ha: HA, url: str, start: float, end: float, out: Path, *, charts: bool = False
) -> dict[str, Any]:
    thresholds = [arg for t in ha.settings.thresholds for arg in ("--thresholds", str(t))]
    code = main(
        ["report", "--prometheus", url, "--start", str(start), "--end", str(end),
         "--out", str(out), "--quiet", *thresholds,
         *(["--format", "json,html"] if charts else ["--format", "json", "--no-charts"])]
    )  # fmt: skip
    assert code == 0
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_report_from_victoria_metrics_agrees_with_a_replica(ha: HA, tmp_path: Path) -> None:
    """Counters are compared at instants with no request near them: the store keeps, per
    scrape interval, the sample of whichever replica scraped last, and a counter read from
    the other replica's scrape a fraction of a second apart would count other requests."""
    ha.traffic.stop()
    stopped = time.time()
    wait_until(lambda: _scraped_by_both_after(ha, stopped + 1), 15, interval=POLL)
    start = time.time()
    # A scrape inside the window before the first request, and requests spread over several
    # scrapes: a quantile over the window's increase sees only what happened between its
    # first and last sample in the window (Prometheus takes no sample from before it).
    wait_until(lambda: _scraped_by_both_after(ha, start), 15, interval=POLL)
    import httpx

    requests = 0
    until = time.monotonic() + LOAD_SECONDS
    with httpx.Client(base_url=ha.settings.url("demo"), timeout=30) as http:
        while time.monotonic() < until:
            body = {"prompt": f"rain {requests}", "duration_seconds": 1}
            assert http.post("/v1/audio/generate", json=body).status_code == 200
            requests += 1
    sent = time.time()
    wait_until(lambda: _scraped_by_both_after(ha, sent + 1), 15, interval=POLL)
    end = time.time()
    wait_until(lambda: _vm_has_samples_after(ha, end + 1), 30, interval=POLL)
    # From the store with the dashboards drawn too: the renderer's queries run there as on
    # a Prometheus.
    store = _report(
        ha, ha.settings.url("victoria_metrics"), start, end, tmp_path / "vm", charts=True
    )
    assert store["charts"]
    for chart in store["charts"]:
        assert (tmp_path / "vm" / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
    replica = _report(ha, ha.settings.url("prometheus_2"), start, end, tmp_path / "prom")

    def routes(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["method"], r["route"]): r for r in report["figures"]["routes"]}

    ours, theirs = routes(store), routes(replica)
    assert sorted(ours) == sorted(theirs)
    generate = ("POST", "/v1/audio/generate")
    assert theirs[generate]["requests"] == requests, theirs[generate]
    compared = {}
    for key, row in theirs.items():
        assert ours[key]["requests"] == row["requests"], key
        assert ours[key]["errors"] == row["errors"], key
        if row["p95_bucket"] is not None:
            # Both quantiles lie in the same histogram bucket: the resolution of the data.
            assert ours[key]["p95_bucket"] == row["p95_bucket"], key
            compared[" ".join(key)] = {
                "requests": row["requests"],
                "p95_bucket": row["p95_bucket"],
                "p95_victoria_metrics": ours[key]["latency_seconds"].get("p95"),
                "p95_prometheus_2": row["latency_seconds"].get("p95"),
            }
    assert compared
    ha.findings["report"] = compared
