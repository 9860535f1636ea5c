"""The local stack runner: real Prometheus, Alertmanager, exporter, demo and alert sink."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from inferwatch.stack import Ports, Stack, StackError, StackSettings, components
from inferwatch.stack.prometheus_api import Prometheus
from tests.support import free_port, wait_until
from tests.support.server import inferwatch_command


def ports() -> Ports:
    return Ports(*(free_port() for _ in range(5)))


def settings(data_dir: Path, **overrides) -> StackSettings:
    """Fast settings on free ports; without the own Redis and PostgreSQL, which only the
    tests of tests/test_stack_backends.py need."""
    values = {
        "data_dir": data_dir,
        "ports": ports(),
        "scrape_interval": "1s",
        "evaluation_interval": "1s",
        "demo_time_scale": 0.01,
        "embedded_backends": (),
    }
    values.update(overrides)
    return StackSettings(**values)


def query(stack: Stack, promql: str, at: float | None = None) -> list[dict]:
    return Prometheus(stack.settings.url("prometheus"), timeout=5).query(promql, at)


def all_targets_up(stack: Stack) -> bool:
    status = stack.status()
    return bool(status and status.targets_total == 5 and status.targets_up == 5)


def test_stack_comes_up_with_every_target_and_rule(tmp_path: Path) -> None:
    # Rule groups evaluated every second: their 1m default would leave rules unevaluated for
    # up to a minute. And firing alerts re-sent every 2 s: Prometheus's first sends can come
    # before its notifier has found Alertmanager, and are then only re-sent after its 1m
    # resend delay.
    fast_rules = tmp_path / "fast-rules.yaml"
    fast_rules.write_text("settings:\n  evaluation_interval: 1s\n", encoding="utf-8")
    fast = settings(tmp_path, thresholds=(fast_rules,), group_wait="1s", alert_resend_delay="2s")
    with Stack(fast) as stack:
        wait_until(lambda: all_targets_up(stack), timeout=30, message="every target up")
        prometheus = Prometheus(stack.settings.url("prometheus"), timeout=5)

        def evaluated() -> list[dict] | None:
            found = [rule for group in prometheus.rules() for rule in group["rules"]]
            return found if all(rule["health"] != "unknown" for rule in found) else None

        # Every rule evaluated at least once, and none of them in error.
        rules = wait_until(evaluated, timeout=30, interval=0.5, message="every rule evaluated")
        assert all(rule["health"] == "ok" for rule in rules), [
            (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
        ]
        alerts = {r["name"] for r in rules if r["type"] == "alerting"}
        assert {"Watchdog", "TargetDown", "APIHighErrorRate"} <= alerts
        # the Watchdog always fires: it proves rules, Alertmanager and the sink are wired
        sink = stack.settings.url("alert_sink")

        def watchdog_delivered() -> bool:
            url = f"{sink}/notifications?alertname=Watchdog&receiver=heartbeat"
            return bool(json.load(urllib.request.urlopen(url, timeout=5)))

        wait_until(
            watchdog_delivered,
            timeout=60,
            interval=0.5,
            message="Watchdog at the heartbeat receiver",
        )
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


def test_every_port_in_use_is_named_in_one_error(tmp_path: Path) -> None:
    config = settings(tmp_path)
    taken = {"prometheus": config.ports.prometheus, "demo": config.ports.demo}
    with contextlib.ExitStack() as busy:
        for port in taken.values():
            sock = busy.enter_context(socket.socket())
            sock.bind(("127.0.0.1", port))
            sock.listen()
        with pytest.raises(StackError) as raised:
            Stack(config).start()
    assert str(raised.value).splitlines() == [
        "2 ports are in the way:",
        f"  port {taken['prometheus']} on 127.0.0.1 is already in use; prometheus needs it "
        "(pick another with --prometheus-port)",
        f"  port {taken['demo']} on 127.0.0.1 is already in use; demo needs it "
        "(pick another with --demo-port)",
    ]
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_bad_settings_are_rejected() -> None:
    for bad in ("fast", "0s", "0m", "-1s", "1.0001s"):
        with pytest.raises(ValueError, match=r"^--scrape-interval must be a positive duration"):
            StackSettings(scrape_interval=bad)
    with pytest.raises(ValueError, match=r"^--repeat-interval must be a positive duration"):
        StackSettings(repeat_interval="0s")
    with pytest.raises(ValueError, match="its own port"):
        StackSettings(ports=Ports(9090, 9090, 9095, 8000, 9841))
    with pytest.raises(ValueError, match="host:port"):
        StackSettings(service_targets=("http://user:pw@host:1",))
    with pytest.raises(ValueError, match="nothing to monitor"):
        StackSettings(run_demo=False)
    with pytest.raises(ValueError, match="no such backend"):
        StackSettings(embedded_backends=("mysql",))


def test_durations_follow_the_projects_one_grammar() -> None:
    """The grammar of inferwatch.alerts.units, written back as Prometheus spells it."""
    given = StackSettings(scrape_interval="1h30m", evaluation_interval="1.5s", group_wait="0s")
    assert (given.scrape_interval, given.evaluation_interval) == ("1h30m", "1500ms")
    assert given.group_wait == "0s"  # a group may notify at once


def test_cli_exits_once_everything_is_up(stack_dir: Path) -> None:
    p = ports()
    command = [
        *inferwatch_command(), "stack", "up", "--data-dir", str(stack_dir),
        "--prometheus-port", str(p.prometheus), "--alertmanager-port", str(p.alertmanager),
        "--alert-sink-port", str(p.alert_sink), "--demo-port", str(p.demo),
        "--exporter-port", str(p.exporter), "--scrape-interval", "1s",
        "--evaluation-interval", "1s", "--demo-time-scale", "0.01", "--status-interval", "0.5",
        "--exit-when-up",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    # The default stack: the own Redis and PostgreSQL too, and the exporter watching them.
    assert "[3/7] redis healthy" in out and "[4/7] postgres healthy" in out
    assert "[7/7] prometheus healthy" in out
    with_backends = StackSettings(redis_url="redis://h:1/0", postgres_url="postgres://h/db")
    collectors = ", ".join(components.exporter_collectors(with_backends))
    assert f"standalone exporter ({collectors})" in out
    assert "targets up 5/5 · firing: " in out
    assert f"http://127.0.0.1:{p.prometheus}" in out
    assert out.rstrip().endswith("stopped")


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["stack", "up", "--scrape-interval", "soon"],
         "inferwatch stack up: --scrape-interval must be a positive duration like 15s or 1m30s, "
         "got 'soon'"),
        (["stack", "up", "--scrape-interval", "0s"],
         "inferwatch stack up: --scrape-interval must be a positive duration like 15s or 1m30s, "
         "got '0s'"),
        (["stack", "up", "--evaluation-interval", "0m"],
         "inferwatch stack up: --evaluation-interval must be a positive duration like 15s or "
         "1m30s, got '0m'"),
        (["exporter", "--collectors", ""],
         "inferwatch exporter: command line: 'collectors' needs at least one collector "
         "(known: host, gpu, redis, postgres)"),
        (["exporter", "--collectors", " , "],
         "inferwatch exporter: command line: 'collectors' needs at least one collector "
         "(known: host, gpu, redis, postgres)"),
    ],
)  # fmt: skip
def test_cli_rejects_bad_input_in_one_line(argv: list[str], error: str) -> None:
    done = subprocess.run(
        [*inferwatch_command(), *argv], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr, done.stdout) == (2, error + "\n", "")
    assert sys.executable  # the same interpreter ran it


def test_gpu_collector_only_where_a_driver_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(components, "nvml_available", lambda: False)
    assert components.exporter_collectors(StackSettings()) == ["host"]
    monkeypatch.setattr(components, "nvml_available", lambda: True)
    with_backends = StackSettings(
        redis_url="redis://127.0.0.1:6379/0", postgres_url="postgresql://127.0.0.1/db"
    )
    assert components.exporter_collectors(with_backends) == ["host", "gpu", "redis", "postgres"]
    chosen = StackSettings(exporter_collectors=("host",))
    assert components.exporter_collectors(chosen) == ["host"]
