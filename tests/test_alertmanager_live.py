"""A real Alertmanager (Debian's prometheus-alertmanager) with the rendered configuration.

Each test starts its own Alertmanager on a free loopback port, clustering off and storage in
tmp. The configuration is :func:`render_alertmanager_config` (the committed file is its
default rendering), or our AlertmanagerConfig as the Prometheus Operator merges it into
kube-prometheus-stack's configuration (``tests/support/operator.py``), pointed at a free
port or at a real alert sink, with short timings where a test waits for notifications.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from inferwatch.alertmanager import Timing, render_alertmanager_config
from inferwatch.alertsink.client import AlertSinkClient
from inferwatch.deploy import alertmanager_crd, kubernetes
from tests.support import Server, free_port, serve, wait_until
from tests.support.operator import assemble, chart_config
from tests.support.server import LOOPBACK, inferwatch_command

CRITICAL = {"alertname": "InferwatchHighErrorRate", "severity": "critical", "service": "demo"}
WARNING = {**CRITICAL, "severity": "warning"}

StartAlertmanager = Callable[[str], Server]


@pytest.fixture
def start_alertmanager(tmp_path: Path) -> Iterator[StartAlertmanager]:
    exe = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if exe is None:
        pytest.skip("prometheus-alertmanager (Debian package) is not installed")
    with contextlib.ExitStack() as stack:

        def start(config_text: str) -> Server:
            port = free_port()
            directory = tmp_path / f"alertmanager-{port}"
            directory.mkdir()
            config = directory / "alertmanager.yml"
            config.write_text(config_text, encoding="utf-8")
            command = [
                exe,
                f"--config.file={config}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--cluster.listen-address=",  # no gossip: nothing waits for peers
                f"--storage.path={directory / 'data'}",
            ]
            return stack.enter_context(
                serve(command, port=port, log_path=directory / "log", ready_path="/-/ready")
            )

        yield start


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def post_alerts(am: Server, *alerts: dict[str, Any]) -> None:
    response = httpx.post(f"{am.url}/api/v2/alerts", json=list(alerts), timeout=10.0)
    assert response.status_code == 200, response.text


def firing(labels: dict[str, str]) -> dict[str, Any]:
    return {"labels": labels, "annotations": {"summary": "test"}, "startsAt": now()}


def resolved(labels: dict[str, str]) -> dict[str, Any]:
    return {"labels": labels, "endsAt": now()}


def am_alerts(am: Server) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    """Alertmanager's view of every alert it holds (inhibited ones too), by label set."""
    response = httpx.get(f"{am.url}/api/v2/alerts", timeout=10.0)
    assert response.status_code == 200, response.text
    return {tuple(sorted(a["labels"].items())): a for a in response.json()}


def key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_critical_inhibits_the_warning_of_the_same_alertname_and_service(
    start_alertmanager: StartAlertmanager,
) -> None:
    # The committed routes and inhibition, with webhooks aimed at a port nobody listens on.
    am = start_alertmanager(render_alertmanager_config(f"http://{LOOPBACK}:{free_port()}"))
    other_service = {**WARNING, "service": "exporter"}
    other_alert = {**WARNING, "alertname": "InferwatchHighLatencyP95"}
    post_alerts(am, firing(CRITICAL), firing(WARNING), firing(other_service), firing(other_alert))

    def inhibited() -> dict[str, Any] | None:
        alerts = am_alerts(am)
        warning = alerts.get(key(WARNING))
        return alerts if warning and warning["status"]["inhibitedBy"] else None

    alerts = wait_until(inhibited, 10.0, interval=0.05, message="the warning to be inhibited")
    critical, warning = alerts[key(CRITICAL)], alerts[key(WARNING)]
    assert warning["status"] == {
        "state": "suppressed",
        "inhibitedBy": [critical["fingerprint"]],
        "silencedBy": [],
    }
    assert critical["status"]["state"] == "active"
    assert critical["status"]["inhibitedBy"] == []
    for labels in (other_service, other_alert):
        assert alerts[key(labels)]["status"]["state"] == "active", labels
        assert alerts[key(labels)]["status"]["inhibitedBy"] == []

    # Once the critical resolves, the warning is no longer held back.
    post_alerts(am, resolved(CRITICAL))
    wait_until(
        lambda: am_alerts(am)[key(WARNING)]["status"]["state"] == "active",
        10.0,
        interval=0.05,
        message="the warning to become active after the critical resolved",
    )


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    command = [
        *inferwatch_command(),
        "alert-sink",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--no-access-log",
    ]
    with serve(command, port=port, log_path=tmp_path / "sink.log") as server:
        yield server


def test_notifications_reach_the_sink_at_their_receivers(
    start_alertmanager: StartAlertmanager, sink: Server
) -> None:
    # Every route with a short wait, so notifications arrive within a second or two.
    fast = Timing(group_wait="100ms", group_interval="1s", repeat_interval="1h")
    am = start_alertmanager(render_alertmanager_config(sink.url, timings=fast))
    client = AlertSinkClient(sink.url)

    post_alerts(am, firing(CRITICAL))
    page = client.wait_for(CRITICAL["alertname"], "firing", receiver="pager", timeout=15.0)
    assert (page["endpoint"], page["labels"]) == ("pager", CRITICAL)

    watchdog = {"alertname": "Watchdog", "severity": "none"}
    chat = {**WARNING, "alertname": "InferwatchHighLatencyP95"}
    unknown = {**CRITICAL, "alertname": "InferwatchQueueBacklog", "severity": "info"}
    # WARNING has the alertname and service of the firing critical: inhibited, not sent.
    post_alerts(am, firing(WARNING), firing(watchdog), firing(chat), firing(unknown))
    for labels, receiver in ((watchdog, "heartbeat"), (chat, "chat"), (unknown, "default")):
        record = client.wait_for(labels["alertname"], "firing", receiver=receiver, timeout=15.0)
        assert (record["endpoint"], record["labels"]) == (receiver, labels)

    # By now the warning's group has flushed too (same wait as the others), muted.
    assert all(r["labels"] != WARNING for r in client.notifications(receiver="chat"))
    assert am_alerts(am)[key(WARNING)]["status"]["state"] == "suppressed"

    post_alerts(am, resolved(CRITICAL))
    done = client.wait_for(CRITICAL["alertname"], "resolved", receiver="pager", timeout=15.0)
    assert (done["endpoint"], done["fingerprint"]) == ("pager", page["fingerprint"])
    assert done["ends_at"] != "0001-01-01T00:00:00Z"

    # Held back while the critical fired, the warning reaches chat once it has resolved.
    late = client.wait_for(WARNING["alertname"], "firing", receiver="chat", timeout=15.0)
    assert late["labels"] == WARNING


# --- inhibition of the same problem only -------------------------------------------------

FAST = Timing(group_wait="100ms", group_interval="1s", repeat_interval="1h")
K8S_NAMESPACE = kubernetes.Settings().namespace


def _host_alerts(namespace: str | None) -> dict[str, dict[str, str]]:
    """Two hosts and two routes, each with a critical on the first and warnings on both."""
    scope = {"namespace": namespace} if namespace else {}

    def host(severity: str, instance: str) -> dict[str, str]:
        return {
            "alertname": "HostHighCPUUsage", "severity": severity, "service": "inferwatch-exporter",
            "job": "inferwatch-exporter", "instance": instance, **scope,
        }  # fmt: skip

    def route(severity: str, http_route: str) -> dict[str, str]:
        return {
            "alertname": "APIHighLatencyP95", "severity": severity, "service": "inferwatch-api",
            "job": "inferwatch-api", "http_route": http_route, **scope,
        }  # fmt: skip

    return {
        "host-1 critical": host("critical", "host-1:9841"),
        "host-1 warning": host("warning", "host-1:9841"),
        "host-2 warning": host("warning", "host-2:9841"),
        "/v1/a critical": route("critical", "/v1/a"),
        "/v1/a warning": route("warning", "/v1/a"),
        "/v1/b warning": route("warning", "/v1/b"),
    }


def _native(sink_url: str) -> str:
    return render_alertmanager_config(sink_url, timings=FAST)


def _operator(sink_url: str, inhibit_rules: list[dict[str, Any]]) -> str:
    """Our AlertmanagerConfig merged by the operator into the chart's configuration."""
    settings = kubernetes.Settings()
    amc = {
        **kubernetes.alertmanager_config(settings),
        "spec": alertmanager_crd.spec(sink_url, timings=FAST),
    }
    base = {**chart_config(), "inhibit_rules": inhibit_rules}
    base.pop("templates")  # the chart's template folder exists only in its pod
    return yaml.safe_dump(assemble(base, [amc]), sort_keys=False)


# deployment -> (configuration for a sink URL, the alerts' namespace, the operator's prefix
# of receiver names)
DEPLOYMENTS: dict[str, tuple[Callable[[str], str], str | None, str]] = {
    "local-and-compose": (_native, None, ""),
    # The chart's inhibit rules as deploy/kubernetes/chart-values.yaml sets them.
    "kubernetes": (
        lambda url: _operator(url, kubernetes.chart_inhibit_rules(kubernetes.Settings())),
        K8S_NAMESPACE,
        f"{K8S_NAMESPACE}/inferwatch/",
    ),
}


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_a_critical_inhibits_only_the_warning_of_the_same_object(
    start_alertmanager: StartAlertmanager, sink: Server, deployment: str
) -> None:
    render, namespace, prefix = DEPLOYMENTS[deployment]
    am = start_alertmanager(render(sink.url))
    client = AlertSinkClient(sink.url)
    alerts = _host_alerts(namespace)
    criticals = [labels for name, labels in alerts.items() if name.endswith("critical")]
    warnings = [labels for name, labels in alerts.items() if name.endswith("warning")]
    # The criticals first, so they are firing when the warnings' groups are flushed.
    post_alerts(am, *map(firing, criticals))
    wait_until(
        lambda: all(am_alerts(am).get(key(c)) for c in criticals), 10.0, interval=0.05,
        message="Alertmanager to hold the criticals",
    )  # fmt: skip
    post_alerts(am, *map(firing, warnings))

    same = [alerts["host-1 warning"], alerts["/v1/a warning"]]
    other = [alerts["host-2 warning"], alerts["/v1/b warning"]]

    def settled() -> dict[str, Any] | None:
        held = am_alerts(am)
        suppressed = all(held.get(key(w), {}).get("status", {}).get("inhibitedBy") for w in same)
        return held if suppressed else None

    held = wait_until(settled, 10.0, interval=0.05, message="the same-object warnings inhibited")
    for warning, critical in zip(same, criticals, strict=True):
        assert held[key(warning)]["status"]["inhibitedBy"] == [held[key(critical)]["fingerprint"]]
    for labels in other:
        assert held[key(labels)]["status"] == {
            "state": "active", "inhibitedBy": [], "silencedBy": [],
        }  # fmt: skip

    def chatted() -> list[dict[str, Any]] | None:
        found = client.notifications(receiver=prefix + "chat")
        return found if len(found) >= len(other) else None

    chat = wait_until(chatted, 15.0, interval=0.05, message="the other warnings in chat")
    wait_until(
        lambda: (found := client.notifications(receiver=prefix + "pager")) and len(found) > 1,
        15.0, interval=0.05, message="both criticals paged",
    )  # fmt: skip
    pages = client.notifications(receiver=prefix + "pager")
    # Exactly these notifications: both criticals paged, the two warnings of other objects
    # in chat, the two warnings of the criticals' own objects nowhere.
    assert sorted(key(r["labels"]) for r in pages) == sorted(map(key, criticals))
    assert sorted(key(r["labels"]) for r in chat) == sorted(map(key, other))
    assert {r["status"] for r in [*pages, *chat]} == {"firing"}
    everything = client.notifications()
    assert all(key(r["labels"]) not in set(map(key, same)) for r in everything)
    assert len(everything) == 4


def test_the_charts_default_inhibition_would_hide_other_hosts_warnings(
    start_alertmanager: StartAlertmanager,
) -> None:
    # Why chart-values.yaml restates the chart's inhibit rules: left as they are, they compare
    # only namespace and alertname, and every inferwatch alert shares one namespace.
    url = f"http://{LOOPBACK}:{free_port()}"
    am = start_alertmanager(_operator(url, chart_config()["inhibit_rules"]))
    alerts = _host_alerts(K8S_NAMESPACE)
    post_alerts(am, firing(alerts["host-1 critical"]))
    wait_until(lambda: am_alerts(am), 10.0, interval=0.05, message="the critical held")
    post_alerts(am, firing(alerts["host-2 warning"]))
    other_host = key(alerts["host-2 warning"])
    wait_until(
        lambda: am_alerts(am).get(other_host, {}).get("status", {}).get("state") == "suppressed",
        10.0, interval=0.05, message="the other host's warning suppressed by the chart's rule",
    )  # fmt: skip
