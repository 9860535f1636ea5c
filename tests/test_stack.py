"""The local stack runner: real Prometheus, Alertmanager, exporter, demo and alert sink."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from inferwatch.stack import Ports, Stack, StackError, StackSettings
from tests.support import free_port, wait_until
from tests.support.server import inferwatch_command


def ports() -> Ports:
    return Ports(*(free_port() for _ in range(5)))


def settings(data_dir: Path, **overrides) -> StackSettings:
    values = {
        "data_dir": data_dir,
        "ports": ports(),
        "scrape_interval": "1s",
        "evaluation_interval": "1s",
        "demo_time_scale": 0.01,
    }
    values.update(overrides)
    return StackSettings(**values)


def query(stack: Stack, promql: str, at: float | None = None) -> list[dict]:
    params = {"query": promql} | ({"time": repr(at)} if at is not None else {})
    url = f"{stack.settings.url('prometheus')}/api/v1/query?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


def all_targets_up(stack: Stack) -> bool:
    status = stack.status()
    return bool(status and status.targets_total == 5 and status.targets_up == 5)


def test_stack_comes_up_with_every_target_and_rule(tmp_path: Path) -> None:
    with Stack(settings(tmp_path)) as stack:
        wait_until(lambda: all_targets_up(stack), timeout=30, message="every target up")
        groups = json.load(
            urllib.request.urlopen(f"{stack.settings.url('prometheus')}/api/v1/rules", timeout=5)
        )["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert all(rule["health"] != "err" for rule in rules), [
            (r["name"], r.get("lastError")) for r in rules if r["health"] == "err"
        ]
        alerts = {r["name"] for r in rules if r["type"] == "alerting"}
        assert {"Watchdog", "TargetDown", "APIHighErrorRate"} <= alerts
        # the Watchdog always fires: it proves rules, Alertmanager and the sink are wired
        sink = stack.settings.url("alert_sink")

        def watchdog_delivered() -> bool:
            url = f"{sink}/notifications?alertname=Watchdog&receiver=heartbeat"
            return bool(json.load(urllib.request.urlopen(url, timeout=5)))

        wait_until(watchdog_delivered, timeout=60, message="Watchdog at the heartbeat receiver")
    # everything stopped: nothing listens on the stack's ports any more
    for _, port in stack.settings.ports.items():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def stored(stack: Stack, job: str, at: float | None = None) -> list:
    """The raw samples of ``up{job}`` over the last hour (as of ``at``)."""
    result = query(stack, f'up{{job="{job}"}}[1h]', at)
    return result[0]["values"] if result else []


def test_restart_keeps_every_stored_sample(tmp_path: Path) -> None:
    config = settings(tmp_path)
    with Stack(config) as stack:
        wait_until(lambda: len(stored(stack, "inferwatch-exporter")) >= 5, timeout=30)
        moment = time.time()
        before = stored(stack, "inferwatch-exporter", moment)
    with Stack(config) as stack:  # same data directory
        after = stored(stack, "inferwatch-exporter", moment)
    assert len(before) >= 5
    assert after == before


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    config = settings(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", config.ports.prometheus))
        busy.listen()
        with pytest.raises(
            StackError, match=rf"port {config.ports.prometheus} .* in use.*--prometheus-port"
        ):
            Stack(config).start()


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="scrape_interval"):
        StackSettings(scrape_interval="fast")
    with pytest.raises(ValueError, match="its own port"):
        StackSettings(ports=Ports(9090, 9090, 9095, 8000, 9841))
    with pytest.raises(ValueError, match="host:port"):
        StackSettings(service_targets=("http://user:pw@host:1",))
    with pytest.raises(ValueError, match="nothing to monitor"):
        StackSettings(run_demo=False)


def test_cli_exits_once_everything_is_up(tmp_path: Path) -> None:
    p = ports()
    command = [
        *inferwatch_command(), "stack", "up", "--data-dir", str(tmp_path),
        "--prometheus-port", str(p.prometheus), "--alertmanager-port", str(p.alertmanager),
        "--alert-sink-port", str(p.alert_sink), "--demo-port", str(p.demo),
        "--exporter-port", str(p.exporter), "--scrape-interval", "1s",
        "--evaluation-interval", "1s", "--demo-time-scale", "0.01", "--status-interval", "0.5",
        "--exit-when-up",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[5/5] prometheus healthy" in out
    assert "targets up 5/5" in out
    assert f"http://127.0.0.1:{p.prometheus}" in out
    assert out.rstrip().endswith("stopped")


def test_cli_reports_bad_arguments() -> None:
    done = subprocess.run(
        [*inferwatch_command(), "stack", "up", "--scrape-interval", "soon"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "scrape_interval must be a duration" in done.stderr
    assert sys.executable  # the same interpreter ran it


def test_gpu_collector_only_where_a_driver_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    from inferwatch.stack import components

    monkeypatch.setattr(components, "nvml_available", lambda: False)
    assert components.exporter_collectors(StackSettings()) == ["host"]
    monkeypatch.setattr(components, "nvml_available", lambda: True)
    with_backends = StackSettings(
        redis_url="redis://127.0.0.1:6379/0", postgres_url="postgresql://127.0.0.1/db"
    )
    assert components.exporter_collectors(with_backends) == ["host", "gpu", "redis", "postgres"]
    chosen = StackSettings(exporter_collectors=("host",))
    assert components.exporter_collectors(chosen) == ["host"]
