"""``inferwatch alert-sink`` as a process: the CLI, a restart with a store file, the client."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import urllib.error
from pathlib import Path
from typing import Any

import httpx
import pytest

from inferwatch.alertsink.client import AlertSinkClient
from tests.support import Server, free_port, serve
from tests.support.server import LOOPBACK, inferwatch_command


def alert(name: str = "InferwatchTargetDown", *, fingerprint: str, **labels: str) -> Any:
    return {
        "status": "firing",
        "labels": {"alertname": name, "severity": "critical", "service": "demo", **labels},
        "startsAt": "2024-05-01T10:00:00Z",
        "fingerprint": fingerprint,
    }


def payload(*alerts: Any) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "pager",
        "alerts": list(alerts),
    }


def sink_command(port: int, *options: str) -> list[str]:
    return [
        *inferwatch_command(),
        "alert-sink",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--no-access-log",
        *options,
    ]


def start(tmp_path: Path, *options: str) -> contextlib.AbstractContextManager[Server]:
    port = free_port()
    return serve(sink_command(port, *options), port=port, log_path=tmp_path / f"sink-{port}.log")


def post(server: Server, body: object, receiver: str = "pager") -> httpx.Response:
    return httpx.post(f"{server.url}/alerts/{receiver}", json=body, timeout=10.0)


def test_alert_sink_is_a_subcommand() -> None:
    result = subprocess.run(
        [*inferwatch_command(), "alert-sink", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for option in ("--host", "--port", "--store", "--forward", "--max-body-bytes"):
        assert option in result.stdout


@pytest.mark.parametrize(
    "options",
    [
        ["--port", "70000"],
        ["--forward", "ftp://x"],
        ["--max-body-bytes", "0"],
        ["--max-connections", "0"],
        ["--request-timeout", "-1"],
        ["--max-receivers", "0"],
    ],
)
def test_bad_options_are_refused(options: list[str]) -> None:
    result = subprocess.run(
        [*inferwatch_command(), "alert-sink", *options], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "alert-sink: error" in result.stderr


def test_records_survive_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "state" / "notifications.jsonl"
    first = payload(alert(fingerprint="kept"))
    with start(tmp_path, "--store", str(store)) as server:
        assert post(server, first).json() == {"recorded": 1, "duplicates": 0}
        before = AlertSinkClient(server.url).notifications()

    with start(tmp_path, "--store", str(store)) as server:
        client = AlertSinkClient(server.url)
        assert client.notifications() == before
        # What Alertmanager re-sends after the restart is still recognised as a repeat.
        assert post(server, first).json() == {"recorded": 0, "duplicates": 1}
        assert post(server, payload(alert(fingerprint="new"))).json()["recorded"] == 1
        assert [r["id"] for r in client.notifications()] == [1, 2]
        assert client.clear() == 2

    with start(tmp_path, "--store", str(store)) as server:
        assert AlertSinkClient(server.url).notifications() == []


def test_client_waits_for_an_alert_and_times_out_with_what_it_saw(tmp_path: Path) -> None:
    with start(tmp_path, "--max-body-bytes", "2048") as server:
        client = AlertSinkClient(server.url)
        post(server, payload(alert("Seen", fingerprint="1")))
        record = client.wait_for("Seen", "firing", receiver="pager", timeout=5.0)
        assert record["fingerprint"] == "1"
        with pytest.raises(TimeoutError, match=r"\('pager', 'Seen', 'firing'\)"):
            client.wait_for("Seen", "resolved", timeout=0.2)
        # --max-body-bytes reaches the app.
        big = payload(alert(fingerprint="2", padding="x" * 4096))
        assert post(server, big).status_code == 413


def test_a_token_file_guards_the_sink_and_the_client_sends_it(tmp_path: Path) -> None:
    token = tmp_path / "sink-token"
    token.write_text("cli-t0ken-0x5EC2E7\n")
    port = free_port()
    with serve(
        sink_command(port),
        port=port,
        log_path=tmp_path / "sink.log",
        env={"INFERWATCH_ALERT_SINK_TOKEN_FILE": str(token)},
    ) as server:
        assert post(server, payload(alert(fingerprint="1"))).status_code == 401
        response = httpx.post(
            f"{server.url}/alerts/pager",
            json=payload(alert(fingerprint="1")),
            headers={"Authorization": "Bearer cli-t0ken-0x5EC2E7"},
            timeout=10.0,
        )
        assert response.json() == {"recorded": 1, "duplicates": 0}
        with pytest.raises(urllib.error.HTTPError) as denied:
            AlertSinkClient(server.url).clear()
        assert denied.value.code == 401
        client = AlertSinkClient(server.url, token="cli-t0ken-0x5EC2E7")
        assert [r["fingerprint"] for r in client.notifications()] == ["1"]
        assert client.clear() == 1
        assert "cli-t0ken" not in repr(client)
        log = server.log()
    assert "auth: on" in log and "cli-t0ken" not in log


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.create_server((LOOPBACK, 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            sink_command(port), capture_output=True, text=True, timeout=60, check=False
        )
    assert result.returncode == 1
    assert f"cannot listen on {LOOPBACK}:{port}: Address already in use" in result.stderr
