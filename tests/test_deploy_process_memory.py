"""The memory-leak signal comes from the service's own processes, in every deployment.

The leak alert and the "service resident memory" panel read ``process_resident_memory_bytes``
of the targets that serve inferwatch's HTTP metrics, as the service itself exposes it: the
real demo's series is checked against psutil on the demo's pid (one process) and on its
workers' pids (``--workers 2``, multiprocess mode, where inferwatch sums the live workers
since prometheus_client exposes no process metrics there). promtool then shows that the
recorded growth exists for the service and not for any other process Prometheus scrapes,
the exporter included, which in docker-compose and Kubernetes sees only itself.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from inferwatch.alerts.signals import BY_KEY
from inferwatch.metrics.process import worker_pids
from tests.support import Metrics, demo_command, free_port, scrape, serve, wait_until

ROOT = Path(__file__).resolve().parent.parent
RSS = "process_resident_memory_bytes"
# RSS moves between the psutil readings and the scrape (allocator, GC): a tenth either way.
SLACK = 0.1


def within(value: float, low: float, high: float) -> bool:
    return low * (1 - SLACK) <= value <= high * (1 + SLACK)


def rss(pids: list[int]) -> int:
    return sum(psutil.Process(pid).memory_info().rss for pid in pids)


def test_the_demo_exposes_its_own_resident_memory(tmp_path: Path) -> None:
    port = free_port()
    with serve(demo_command(port), port=port, log_path=tmp_path / "demo.log") as demo:
        pid = demo.executor.process.pid
        process = psutil.Process(pid)
        before = process.memory_info().rss
        metrics = scrape(demo.url)
        after = process.memory_info().rss
        assert within(metrics.value(RSS), min(before, after), max(before, after))
        # The start time identifies the process: the series is this pid's, nobody else's.
        assert metrics.value("process_start_time_seconds") == pytest.approx(
            process.create_time(), abs=0.05
        )
        assert pid != psutil.Process().pid  # the demo's, not the test runner's


def _until_both_workers_wrote(url: str, directory: Path) -> list[int]:
    """Requests until each of the two workers has served one (and so written its files)."""

    def both() -> list[int] | None:
        httpx.get(f"{url}/admin/faults", timeout=10.0)
        pids = worker_pids(str(directory))
        return pids if len(pids) == 2 else None

    return wait_until(both, 30.0, interval=0.05, message="both workers' metric files")


def test_multiprocess_mode_sums_the_live_workers(tmp_path: Path) -> None:
    port = free_port()
    directory = tmp_path / "multiproc"
    directory.mkdir()
    command = demo_command(port, "--workers", "2", "--multiproc-dir", str(directory))
    with serve(command, port=port, log_path=tmp_path / "demo.log") as demo:
        master = psutil.Process(demo.executor.process.pid)
        workers = _until_both_workers_wrote(demo.url, directory)
        # The pids are the server's own workers: children of the process we started.
        assert set(workers) <= {child.pid for child in master.children(recursive=True)}
        assert master.pid not in workers
        before = rss(workers)
        metrics: Metrics = scrape(demo.url)
        after = rss(workers)
        assert metrics.value("inferwatch_multiprocess_workers") == 2
        assert within(metrics.value(RSS), min(before, after), max(before, after))
        assert len(metrics.samples(RSS)) == 1  # one series for the service, not per worker
        # A worker that dies no longer counts: its pid is gone from the next scrape's sum.
        psutil.Process(workers[0]).kill()
        psutil.Process(workers[0]).wait(10)
        survivors = wait_until(
            lambda: (pids := worker_pids(str(directory))) and workers[0] not in pids and pids,
            30.0, interval=0.05, message="the killed worker to drop out",
        )  # fmt: skip
        assert workers[0] not in survivors


def test_the_recorded_growth_is_the_services_and_no_other_process(tmp_path: Path) -> None:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    series = BY_KEY["memory_leak"].series
    api = {"job": "inferwatch-api", "instance": "api-1:8000"}

    def selector(name: str, labels: dict[str, str]) -> str:
        return name + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"

    test = {
        "rule_files": [str(ROOT / "alerts" / "recording_rules.yaml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # the service: 120 KiB a minute (2 KiB/s), serving inferwatch's metrics
                    {"series": selector(RSS, api), "values": "1000000+122880x60"},
                    {
                        "series": selector(
                            "http_server_active_requests", {**api, "http_request_method": "GET"}
                        ),
                        "values": "0x60",
                    },
                    # Prometheus itself and the exporter grow much faster, but serve no
                    # inferwatch HTTP metrics: not the service, never judged.
                    {
                        "series": selector(RSS, {"job": "prometheus", "instance": "p:9090"}),
                        "values": "1000000+60000000x60",
                    },
                    {
                        "series": selector(
                            RSS, {"job": "inferwatch-exporter", "instance": "node-1"}
                        ),
                        "values": "1000000+60000000x60",
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": series,
                        "eval_time": "40m",
                        "exp_samples": [{"labels": selector(series, api), "value": 2048}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "leak.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False), encoding="utf-8")
    result = subprocess.run(
        [exe, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
