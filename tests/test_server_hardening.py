"""No number of slow or idle clients takes an inferwatch server down.

The process tests run a real service under ``ulimit -n 1024`` (a host FastAPI app that calls
``start_metrics_server``, ``inferwatch exporter``, ``inferwatch alert-sink``) while this
process holds 2,000 connections to its port that each sent half a request head and nothing
more, and check that the service goes on answering. The in-process tests pin down each limit
of :mod:`inferwatch.exposition.protocol`: the request deadline (for a head or a body
dribbled in), the idle timeout, the connection bound and the send deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client import CollectorRegistry, Counter

import inferwatch
from inferwatch.exposition import MetricsServer, ServerLimits
from tests.support import Metrics, free_port, scrape, serve, wait_until
from tests.support.flood import HALF_HEAD, Flood, allow_descriptors, limited
from tests.support.flood import half_sent as flood_of
from tests.support.server import LOOPBACK, inferwatch_command

REPO = Path(__file__).resolve().parent.parent
HELD = 2000  # connections this process holds against it: well past its limit of 1024
REQUESTS = 100


# -- helpers -------------------------------------------------------------------------------------
@contextlib.contextmanager
def half_sent(port: int) -> Iterator[Flood]:
    """:data:`HELD` half-sent connections to ``port`` for the ``with`` block."""
    try:
        allow_descriptors(HELD + 512)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    with flood_of(port, HELD) as flood:
        yield flood


def get_fresh(url: str, **kwargs: Any) -> httpx.Response:
    """GET over a new connection, as a new client of the service would."""
    return httpx.get(url, timeout=10.0, **kwargs)


def server_side(port: int, pid: int | None = None) -> int:
    """Connections the process ``pid`` (this one by default) holds on its listening ``port``."""
    process = psutil.Process(pid)
    return sum(
        1
        for c in process.net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN
    )


# -- real services under `ulimit -n 1024` --------------------------------------------------------
def test_a_host_service_answers_while_its_metrics_port_is_flooded(tmp_path: Path) -> None:
    app_port, metrics_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "uvicorn", "tests.apps.metrics_port_app:app",
        "--app-dir", str(REPO), "--host", LOOPBACK, "--port", str(app_port), "--no-access-log",
    ]  # fmt: skip
    with (
        serve(
            limited(command),
            port=app_port,
            log_path=tmp_path / "host.log",
            env={"METRICS_PORT": str(metrics_port)},
        ) as host,
        half_sent(metrics_port) as flood,
    ):
        for n in range(REQUESTS):
            response = get_fresh(f"{host.url}/v1/ping")
            assert response.status_code == 200, f"request {n}: {response.status_code}"
        metrics = scrape(f"http://{LOOPBACK}:{metrics_port}")
        count = metrics.value("http_server_request_duration_seconds_count", http_route="/v1/ping")
        assert count == REQUESTS, flood
        # Accepted in small batches, the connections beyond the bound are closed as they
        # come: the service settles at the bound, not at the number of clients.
        bound, pid = ServerLimits().max_connections, host.executor.process.pid
        wait_until(
            lambda: server_side(metrics_port, pid) <= bound,
            10.0,
            message=lambda: f"{server_side(metrics_port, pid)} held, {flood}",
        )


def test_the_exporter_answers_scrapes_while_flooded(tmp_path: Path) -> None:
    port = free_port()
    command = [
        *inferwatch_command(), "exporter", "--host", LOOPBACK, "--port", str(port),
        "--collectors", "host",
    ]  # fmt: skip
    with (
        serve(limited(command), port=port, log_path=tmp_path / "exporter.log", ready_path="/"),
        half_sent(port) as flood,
    ):
        for n in range(REQUESTS):
            response = get_fresh(f"http://{LOOPBACK}:{port}/metrics")
            assert response.status_code == 200, f"scrape {n}, {flood}"
            metrics = Metrics(response.text)
            assert metrics.value("inferwatch_exporter_collector_success", collector="host") == 1


def test_the_alert_sink_records_while_flooded(tmp_path: Path) -> None:
    port = free_port()
    command = [
        *inferwatch_command(), "alert-sink", "--host", LOOPBACK, "--port", str(port),
        "--no-access-log",
    ]  # fmt: skip
    notification = {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "pager",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "InferwatchTargetDown"},
                "startsAt": "2024-05-01T10:00:00Z",
                "fingerprint": "f1",
            }
        ],
    }
    with (
        serve(limited(command), port=port, log_path=tmp_path / "sink.log") as sink,
        half_sent(port) as flood,
    ):
        for n in range(REQUESTS):
            response = get_fresh(f"{sink.url}/healthz")
            assert response.status_code == 200, f"request {n}, {flood}"
        posted = httpx.post(f"{sink.url}/alerts/pager", json=notification, timeout=10.0)
        assert (posted.status_code, posted.json()) == (200, {"recorded": 1, "duplicates": 0})
        records = get_fresh(f"{sink.url}/notifications").json()
        assert [(r["receiver"], r["alertname"]) for r in records] == [
            ("pager", "InferwatchTargetDown")
        ]


# -- each limit, in process ----------------------------------------------------------------------
def registry_with_one_counter() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("hardening_probe", "A counter for the scrape to show.", registry=registry).inc()
    return registry


@pytest.fixture
def start_server() -> Iterator[Any]:
    """``start_server(**limits)``: start_metrics_server on a free port with those limits."""
    servers: list[MetricsServer] = []

    def start(**limits: Any) -> MetricsServer:
        server = inferwatch.start_metrics_server(
            0,
            host=LOOPBACK,
            registry=registry_with_one_counter(),
            limits=ServerLimits(**limits),
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.server_close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=10.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def answered(sock: socket.socket, timeout: float) -> bool:
    """Whether the server has sent something (or closed) within ``timeout`` seconds."""
    return bool(select.select([sock], [], [], timeout)[0])


def read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _more(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += _more(sock)
    return head + b"\r\n\r\n" + body


def _more(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise AssertionError("the server closed the connection in the middle of a response")
    return chunk


def dribble(port: int, first: bytes, more: bytes, *, limit: int) -> tuple[int, float, bytes]:
    """Connect, send ``first``, then ``more`` every 0.1 s until the server answers (at most
    ``limit`` times). Returns how many of ``more`` went out, the seconds from before the
    connect (the server's deadline starts when it accepts) to the answer, and the answer."""
    started = time.monotonic()
    with connect(port) as sock:
        sock.sendall(first)
        for sent in range(limit):
            if answered(sock, 0.1):
                return sent, time.monotonic() - started, read_all(sock)
            sock.sendall(more)
    raise AssertionError(f"the server never cut off a request dribbled for {limit} rounds")


def test_a_dribbled_head_is_cut_off_at_the_request_deadline(start_server: Any) -> None:
    server = start_server(request_timeout=1.0)
    sent, seconds, reply = dribble(server.port, HALF_HEAD, b"X-Pad: a\r\n", limit=300)
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), reply
    assert seconds >= 1.0, "closed before the deadline"
    assert sent < 300  # extra header lines did not extend the deadline


def test_a_kept_alive_connection_gets_a_fresh_deadline_and_an_idle_timeout(
    start_server: Any,
) -> None:
    server = start_server(request_timeout=1.0, idle_timeout=1.0)
    request = b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"
    with connect(server.port) as busy, connect(server.port) as idle:
        for sock in (busy, idle):
            sock.sendall(request)
            assert read_response(sock).startswith(b"HTTP/1.1 200 OK\r\n")
        # The next request on `busy` starts and stalls: its own deadline applies.
        busy.sendall(HALF_HEAD)
        assert read_all(busy).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        # `idle` sent nothing more: closed without a word once idle for idle_timeout.
        assert read_all(idle) == b""


def test_past_the_bound_the_oldest_idle_connection_makes_room(start_server: Any) -> None:
    # A request deadline far beyond the test: a connection closed here was evicted.
    server = start_server(max_connections=4, request_timeout=300)
    idle = [connect(server.port) for _ in range(4)]
    try:
        for sock in idle:
            sock.sendall(HALF_HEAD)
        wait_until(lambda: server_side(server.port) == 4, 10.0, message="4 connections held")
        response = get_fresh(f"http://{LOOPBACK}:{server.port}/metrics")
        assert response.status_code == 200
        assert Metrics(response.text).value("hardening_probe_total") == 1
        assert read_all(idle[0]) == b"", "the oldest idle connection was closed"
        assert [answered(sock, 0) for sock in idle[1:]] == [False, False, False]
    finally:
        for sock in idle:
            sock.close()


class Gate:
    """An ASGI app that holds every request until released, then answers 200."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.entered += 1
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        headers = [(b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"done"})


def test_when_every_connection_is_being_answered_a_new_one_is_refused() -> None:
    gate = Gate()
    # A request deadline far beyond the test: a connection closed here was refused.
    limits = ServerLimits(max_connections=2, request_timeout=300)
    server = MetricsServer(gate, LOOPBACK, 0, limits=limits)
    try:
        busy = [connect(server.port) for _ in range(2)]
        for sock in busy:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_until(lambda: gate.entered == 2, 10.0, message="2 requests being answered")
        with connect(server.port) as third:
            assert read_all(third) == b"", "refused without an answer"
        gate.release.set()
        for sock in busy:
            assert read_response(sock).endswith(b"\r\n\r\ndone")
            sock.close()
    finally:
        gate.release.set()
        server.server_close()


def test_a_client_that_stops_reading_is_dropped_at_the_send_deadline() -> None:
    async def big(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * (32 * 1024 * 1024)})

    server = MetricsServer(big, LOOPBACK, 0, limits=ServerLimits(send_timeout=1.0))
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((LOOPBACK, server.port))
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # and never read
            wait_until(lambda: server_side(server.port) == 1, 10.0, message="the connection")
            wait_until(
                lambda: server_side(server.port) == 0,
                15.0,
                message="the server to drop the connection of a client that stopped reading",
            )
    finally:
        server.server_close()


def test_the_request_deadline_cuts_off_a_dribbled_alert_sink_body() -> None:
    from inferwatch.alertsink.app import create_app
    from inferwatch.alertsink.server import sink_server

    port = free_port()
    app = create_app()
    server = sink_server(
        app,
        host=LOOPBACK,
        port=port,
        limits=ServerLimits(request_timeout=1.0),
        log_level="warning",
        access_log=False,
    )
    thread = threading.Thread(target=server.run, name="sink", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 10.0, message="sink start")
        body = json.dumps({"padding": "x" * 2000}).encode()
        head = (
            b"POST /alerts/pager HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        sent, seconds, reply = dribble(port, head, b"x", limit=len(body))
        assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), reply
        assert seconds >= 1.0
        assert sent < len(body)
        base = f"http://{LOOPBACK}:{port}"
        assert get_fresh(f"{base}/notifications").json() == []
        wait_until(
            lambda: (
                scrape(base).value("inferwatch_alertsink_rejected_total", reason="malformed") == 1
            ),
            5.0,
            message="the cut-off request to be counted as malformed",
        )
    finally:
        server.should_exit = True
        thread.join(10.0)
