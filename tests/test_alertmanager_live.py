"""A real Alertmanager (Debian's prometheus-alertmanager) with the rendered configuration.

Each test starts its own Alertmanager on a free loopback port, clustering off and storage in
tmp. The configuration is :func:`render_alertmanager_config` (the committed file is its
default rendering), pointed at a free port or at a real alert sink, with short timings where
a test waits for notifications.
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

from inferwatch.alertmanager import Timing, render_alertmanager_config
from inferwatch.alertsink.client import AlertSinkClient
from tests.support import Server, free_port, serve, wait_until
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
