"""``inferwatch demo`` as a command: arguments, start-up, busy ports, workers, uvicorn --factory."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from inferwatch.cli import main as cli
from tests.support import Server, StartDemo, free_port, serve, wait_for_metrics, wait_until
from tests.support.server import LOOPBACK, inferwatch_command

COUNT = "http_server_request_duration_seconds_count"
AUDIO = "/v1/audio/generate"
WORKER = "X-Demo-Worker"


def run_cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*inferwatch_command(), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["demo", "--port", "http"], "argument --port: invalid port 'http'"),
        (["demo", "--port", "70000"], "argument --port: invalid port 70000"),
        (["demo", "--time-scale", "0"], "argument --time-scale: must be a finite number > 0"),
        (["demo", "--workers", "0"], "argument --workers: must be at least 1"),
        (["demo", "--colour"], "unrecognized arguments: --colour"),
        (["dmeo"], "invalid choice: 'dmeo'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_argparse_error(args: list[str], complaint: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_busy_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("demo", "--host", LOOPBACK, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"inferwatch demo: cannot listen on {LOOPBACK}:{port}: Address already in use"
    ]


def test_startup_message_names_the_address(demo_server: Server) -> None:
    expected = f"listening on {demo_server.url} (metrics at {demo_server.url}/metrics"
    wait_until(lambda: expected in demo_server.log(), message=f"{expected!r} in the log")


def test_listed_commands_that_do_not_exist_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", ["demo", "not_written_yet"])
    parser = cli.build_parser()
    assert "demo" in parser.format_help()
    assert "not_written_yet" not in parser.format_help()
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["not_written_yet"])
    assert exit_info.value.code == 2


def test_uvicorn_factory_reads_settings_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "inferwatch.demo.app:create_app_from_env",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
    ]
    env = {"INFERWATCH_DEMO_TIME_SCALE": "0.01", "INFERWATCH_DEMO_REQUEST_TIMEOUT": "2.5"}
    with serve(command, port=port, log_path=tmp_path / "uvicorn.log", env=env) as server:
        faults = httpx.get(f"{server.url}/admin/faults").json()
        assert faults["timeout_seconds"] == 2.5
        body = {"prompt": "x", "duration_seconds": 1}
        assert httpx.post(f"{server.url}{AUDIO}", json=body).status_code == 200
        m = wait_for_metrics(server.url, lambda m: m.value(COUNT, http_route=AUDIO) == 1)
        assert m.value(COUNT) == 2
        assert m.samples("process_cpu_seconds_total")  # the default registry's collectors


def test_workers_share_metrics_and_faults(start_demo: StartDemo, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999999.db").write_bytes(b"stale")  # a previous run's leftovers
    server = start_demo("--workers", "2", "--multiproc-dir", str(metrics_dir), "--no-access-log")
    assert not (metrics_dir / "counter_999999999.db").exists()

    def fresh(method: str, path: str, **kwargs: object) -> httpx.Response:
        # A new connection each time, so the kernel can hand it to either worker.
        with httpx.Client(base_url=server.url, timeout=10.0) as one_off:
            return one_off.request(method, path, **kwargs)  # type: ignore[arg-type]

    # Change the faults through one worker; both must answer with the change.
    assert fresh("PUT", "/admin/faults", json={"error_rate": 1.0}).status_code == 200
    seen: dict[str, float] = {}  # worker pid -> the error_rate it reported
    reads = 0

    def both_workers_seen() -> bool:
        nonlocal reads
        reads += 1
        response = fresh("GET", "/admin/faults")
        seen[response.headers[WORKER]] = response.json()["error_rate"]
        return len(seen) == 2

    wait_until(both_workers_seen, timeout=20, message=lambda: f"two workers, saw {seen}")
    assert set(seen.values()) == {1.0}

    body = {"prompt": "x", "duration_seconds": 1}
    for _ in range(6):
        assert fresh("POST", AUDIO, json=body).status_code == 500

    # Both workers served admin requests (their pids answered), so only the sum over both
    # workers' files gives these exact totals, whichever worker serves the scrape.
    for _ in range(4):
        m = wait_for_metrics(server.url, lambda m: m.value(COUNT) == 1 + reads + 6, show=COUNT)
        assert m.value(COUNT, http_route="/admin/faults", http_request_method="GET") == reads
        assert m.value(COUNT, http_route=AUDIO, http_response_status_code="500") == 6
    assert len(list(metrics_dir.glob("histogram_*.db"))) >= 2  # one file per worker
