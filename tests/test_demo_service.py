"""The demo service over real HTTP and WebSocket, checked through its /metrics scrape.

Every test gets a fresh ``inferwatch demo`` process (time scale 0.01), so each count below
is the exact number of requests the test sent, and every series it does not expect is absent.
"""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support import Metrics, Server, wait_for_metrics, wait_until
from tests.support.promtool import promtool_problems

DURATION = "http_server_request_duration_seconds"
COUNT = f"{DURATION}_count"
TTFB = "http_server_time_to_first_byte_seconds"
BACKGROUND = "http_server_background_duration_seconds"
AUDIO = "/v1/audio/generate"
MUSIC = "/v1/music/generate"
JOB = "/v1/jobs/{job_id}"
WS = "/v1/ws/generate"
WAV_HEADER = 44
CLOSE = {"connection": "close"}
SAMPLE_RATE = 8000


def audio_body(seconds: float = 1.0, prompt: str = "rain on a tin roof") -> dict[str, object]:
    return {"prompt": prompt, "duration_seconds": seconds}


def recorded(server: Server, requests: int) -> Metrics:
    """The scrape once exactly ``requests`` HTTP requests are recorded (all of the test's)."""
    return wait_for_metrics(
        server.url,
        lambda m: m.value(COUNT) == requests,
        what=f"{requests} recorded requests",
        show=COUNT,
    )


def count(m: Metrics, method: str, route: str, status: int) -> float | None:
    return m.value(
        COUNT,
        http_request_method=method,
        http_route=route,
        http_response_status_code=str(status),
    )


def set_faults(client: httpx.Client, **faults: float) -> dict[str, float]:
    response = client.put("/admin/faults", json=faults)
    assert response.status_code == 200, response.text
    return response.json()


def test_counts_are_exact_per_route_template_and_status(
    demo_server: Server, client: httpx.Client
) -> None:
    sizes, sent = [], 0
    for seconds in (1.0, 0.5, 2.0):
        payload = json.dumps(audio_body(seconds)).encode()
        sent += len(payload)
        response = client.post(AUDIO, content=payload, headers={"content-type": "application/json"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "audio/wav"
        assert response.content[:4] == b"RIFF"
        assert len(response.content) == WAV_HEADER + seconds * SAMPLE_RATE
        sizes.append(len(response.content))

    created = client.post(
        "/v1/jobs", json={"kind": "music", "prompt": "lofi", "duration_seconds": 8}
    )
    assert created.status_code == 202
    job_id = created.json()["job_id"]
    # The job runs as a background task. Its request is counted with its 202, and the time
    # the task took once the task is over (after the job's row says it ended), so the scrape
    # says when the job is done without polling the status endpoint.
    jobs = {"http_request_method": "POST", "http_route": "/v1/jobs"}
    wait_for_metrics(demo_server.url, lambda m: m.value(f"{BACKGROUND}_count", **jobs) == 1)
    statuses = [client.get(f"/v1/jobs/{job_id}") for _ in range(2)]
    assert [r.json()["status"] for r in statuses] == ["done", "done"]
    result = client.get(f"/v1/jobs/{job_id}/result")
    assert result.json()["size_bytes"] == WAV_HEADER + 8 * SAMPLE_RATE
    unknown = client.get("/v1/jobs/0123456789abcdef")
    assert unknown.status_code == 404
    assert client.get("/healthz").status_code == 200  # not instrumented by default

    m = recorded(demo_server, 3 + 1 + 2 + 1 + 1)
    assert count(m, "POST", AUDIO, 200) == 3
    assert count(m, "POST", "/v1/jobs", 202) == 1
    assert count(m, "GET", JOB, 200) == 2
    assert count(m, "GET", JOB, 404) == 1
    assert count(m, "GET", "/v1/jobs/{job_id}/result", 200) == 1
    # The route label is the template: never the job id, never an excluded path.
    assert m.label_values(COUNT, "http_route") == {
        AUDIO,
        "/v1/jobs",
        JOB,
        "/v1/jobs/{job_id}/result",
    }
    assert job_id not in m.text
    assert "0123456789abcdef" not in m.text
    # Body sizes are the bytes on the wire.
    audio = {"http_request_method": "POST", "http_route": AUDIO}
    assert m.value("http_server_response_body_size_bytes_sum", **audio) == sum(sizes)
    assert m.value("http_server_request_body_size_bytes_sum", **audio) == sent
    assert m.value("http_server_active_requests") == 0
    assert m.value("demo_generated_media_seconds_total", kind="audio") == 3.5
    assert m.value("demo_generated_media_seconds_total", kind="music") == 8
    assert m.samples(f"{TTFB}_count") == []  # nothing here was streamed


def test_invalid_requests_are_422(demo_server: Server, client: httpx.Client) -> None:
    bad = [
        (AUDIO, {"prompt": "x", "duration_seconds": -1}),
        (AUDIO, {"prompt": "x", "duration_seconds": 1, "sample_rate": 48000}),
        (MUSIC, {"prompt": "x", "duration_seconds": 10, "bpm": 1000}),
        ("/v1/jobs", {"kind": "hologram", "prompt": "x", "duration_seconds": 1}),
    ]
    for path, body in bad:
        response = client.post(path, json=body)
        assert response.status_code == 422, (path, body)
        assert response.json()["detail"][0]["loc"][0] == "body"

    m = recorded(demo_server, len(bad))
    assert count(m, "POST", AUDIO, 422) == 2
    assert count(m, "POST", MUSIC, 422) == 1
    assert count(m, "POST", "/v1/jobs", 422) == 1
    assert m.value("demo_generated_media_seconds_total") is None


def test_added_latency_lands_in_the_expected_bucket(
    demo_server: Server, client: httpx.Client
) -> None:
    assert set_faults(client, added_latency_seconds=0.35)["added_latency_seconds"] == 0.35
    assert client.get("/admin/faults").json()["added_latency_seconds"] == 0.35
    assert client.post(AUDIO, json=audio_body(0.5)).status_code == 200

    m = recorded(demo_server, 3)
    labels = {"http_request_method": "POST", "http_route": AUDIO}
    # 350 ms of injected latency plus a few ms of (scaled) generation: in (0.2, 0.5].
    assert m.bucket(DURATION, 0.2, **labels) == 0
    assert m.bucket(DURATION, 0.5, **labels) == 1
    assert m.bucket(DURATION, "+Inf", **labels) == 1
    assert 0.35 <= m.value(f"{DURATION}_sum", **labels) <= 0.5


def test_fault_settings_are_validated_and_reset(client: httpx.Client) -> None:
    defaults = client.get("/admin/faults").json()
    assert defaults == {
        "error_rate": 0.0,
        "stream_failure_rate": 0.0,
        "added_latency_seconds": 0.0,
        "timeout_rate": 0.0,
        "timeout_seconds": 30.0,
        "websocket_failure_rate": 0.0,
        "model_init_delay_seconds": 0.0,
        "model_load_failure_rate": 0.0,
        "memory_leak_mb_per_second": 0.0,
        "pool_exhaustion": False,
        "cold_cache": False,
        "job_leak_mb": 0.0,
        "upstream_failure_rate": 0.0,
        "upstream_outage": False,
    }
    for body, field in [
        ({"error_rate": 1.5}, "error_rate"),
        ({"timeout_rate": -0.1}, "timeout_rate"),
        ({"websocket_failure_rate": "often"}, "websocket_failure_rate"),
        ({"added_latency_seconds": -1}, "added_latency_seconds"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"error_rte": 0.5}, "error_rte"),
        ({"model_init_delay_seconds": -0.5}, "model_init_delay_seconds"),
        ({"model_load_failure_rate": 2}, "model_load_failure_rate"),
        ({"memory_leak_mb_per_second": 5000}, "memory_leak_mb_per_second"),
        ({"pool_exhaustion": "yes"}, "pool_exhaustion"),
        ({"cold_cache": 1}, "cold_cache"),
        ({"job_leak_mb": 300}, "job_leak_mb"),
    ]:
        response = client.put("/admin/faults", json=body)
        assert response.status_code == 422, body
        assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]
    assert client.get("/admin/faults").json() == defaults

    set_faults(client, error_rate=0.5)
    partial = set_faults(client, timeout_rate=0.25)  # fields left out keep their values
    assert (partial["error_rate"], partial["timeout_rate"]) == (0.5, 0.25)
    assert client.delete("/admin/faults").json() == defaults


def test_error_rate_one_gives_exactly_n_500s(demo_server: Server, client: httpx.Client) -> None:
    set_faults(client, error_rate=1.0)
    for _ in range(4):
        # uvicorn drops the connection after an unhandled exception; don't reuse it.
        assert client.post(AUDIO, json=audio_body(), headers=CLOSE).status_code == 500
    assert client.delete("/admin/faults").status_code == 200
    assert client.post(AUDIO, json=audio_body()).status_code == 200

    m = recorded(demo_server, 1 + 4 + 1 + 1)
    assert count(m, "POST", AUDIO, 500) == 4
    assert count(m, "POST", AUDIO, 200) == 1
    exceptions = m.value(
        "http_server_exceptions_total",
        http_route=AUDIO,
        error_type="inferwatch.demo.faults.InjectedFault",
    )
    assert exceptions == 4
    assert m.value("http_server_exceptions_total") == 4


def test_timeout_fault_answers_504_after_the_deadline(
    demo_server: Server, client: httpx.Client
) -> None:
    set_faults(client, timeout_rate=1.0, timeout_seconds=0.2)
    started = time.monotonic()
    response = client.post(MUSIC, json={"prompt": "drone", "duration_seconds": 5})
    assert response.status_code == 504
    assert time.monotonic() - started >= 0.2

    m = recorded(demo_server, 2)
    labels = {"http_route": MUSIC, "http_response_status_code": "504"}
    assert m.bucket(DURATION, 0.2, **labels) == 0
    assert m.bucket(DURATION, 0.5, **labels) == 1
    assert m.value("http_server_exceptions_total") is None  # a handled 504, not a crash


def test_streamed_response_has_one_time_to_first_byte(
    demo_server: Server, client: httpx.Client
) -> None:
    set_faults(client, added_latency_seconds=0.2)  # delays the first chunk only
    chunks = 4
    with client.stream(
        "GET", "/v1/audio/stream", params={"prompt": "birdsong", "chunks": chunks}
    ) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_bytes())
    assert len(body) == WAV_HEADER + chunks * round(0.25 * SAMPLE_RATE)

    m = recorded(demo_server, 2)
    stream = {"http_request_method": "GET", "http_route": "/v1/audio/stream"}
    assert m.value(f"{TTFB}_count") == 1  # only the streamed response has a first byte
    assert m.value(f"{TTFB}_count", **stream) == 1
    assert m.bucket(TTFB, 0.15, **stream) == 0
    assert m.bucket(TTFB, 0.5, **stream) == 1
    assert m.value(f"{TTFB}_sum", **stream) <= m.value(f"{DURATION}_sum", **stream)
    assert m.value("http_server_response_body_size_bytes_sum", **stream) == len(body)


def _receive_all(ws: object) -> list[str | bytes]:
    messages: list[str | bytes] = []
    try:
        while True:
            messages.append(ws.recv(timeout=10))  # type: ignore[attr-defined]
    except ConnectionClosed:
        return messages


def test_websocket_session_counts(demo_server: Server) -> None:
    url = f"{demo_server.ws_url}{WS}?token=demo"
    with connect(url) as ws:
        ws.send(json.dumps({"prompt": "whale song", "chunks": 3, "chunk_seconds": 0.1}))
        messages = _receive_all(ws)
        assert ws.close_code == 1000
    assert [type(message) for message in messages] == [bytes, bytes, bytes, str]
    assert json.loads(messages[-1])["type"] == "done"

    with connect(url) as ws:  # an invalid request: an error message, then close 1007
        ws.send("not json")
        errors = _receive_all(ws)
        assert ws.close_code == 1007
    assert json.loads(errors[0])["type"] == "error"

    route = {"http_route": WS}
    m = wait_for_metrics(
        demo_server.url,
        lambda m: m.value("websocket_server_connections_closed_total", **route) == 2,
        show="websocket_server_connections_closed_total",
    )
    assert m.value("websocket_server_connection_attempts_total", outcome="accepted", **route) == 2
    assert m.value("websocket_server_connection_attempts_total", outcome="rejected") is None
    closed = "websocket_server_connections_closed_total"
    assert m.value(closed, close_code="1000", closed_by="server", **route) == 1
    assert m.value(closed, close_code="1007", closed_by="server", **route) == 1
    assert m.value("websocket_server_messages_total", direction="received", **route) == 2
    assert m.value("websocket_server_messages_total", direction="sent", **route) == 3 + 1 + 1
    assert m.value("websocket_server_active_connections", **route) == 0
    assert m.value("websocket_server_session_duration_seconds_count", **route) == 2
    assert m.value(COUNT) is None  # WebSocket traffic is not counted as HTTP requests


def test_rejected_websockets(demo_server: Server, client: httpx.Client) -> None:
    with pytest.raises(InvalidStatus) as missing_token:
        connect(f"{demo_server.ws_url}{WS}")
    assert missing_token.value.response.status_code == 403

    set_faults(client, websocket_failure_rate=1.0)
    with pytest.raises(InvalidStatus) as injected:
        connect(f"{demo_server.ws_url}{WS}?token=demo")
    assert injected.value.response.status_code == 403

    attempts = "websocket_server_connection_attempts_total"
    m = wait_for_metrics(demo_server.url, lambda m: m.value(attempts) == 2, show=attempts)
    assert m.value(attempts, http_route=WS, outcome="rejected") == 2
    assert m.value(attempts, outcome="accepted") is None
    assert m.samples("websocket_server_connections_closed_total") == []
    assert m.value("websocket_server_messages_total") is None


def test_background_task_time_is_not_request_time(
    demo_server: Server, client: httpx.Client
) -> None:
    # The job's 300 ms of injected latency happen in the background task after the 202.
    set_faults(client, added_latency_seconds=0.3)
    started = time.monotonic()
    created = client.post("/v1/jobs", json={"kind": "audio", "prompt": "x", "duration_seconds": 1})
    assert created.status_code == 202
    assert time.monotonic() - started < 0.3

    recorded(demo_server, 2)
    jobs = {"http_request_method": "POST", "http_route": "/v1/jobs"}
    # The request is recorded with its response, the background time once the task is over.
    m = wait_for_metrics(demo_server.url, lambda m: m.value(f"{BACKGROUND}_count", **jobs) == 1)
    assert m.value(COUNT) == 2
    assert m.bucket(BACKGROUND, 0.2, **jobs) == 0
    assert m.bucket(BACKGROUND, 0.5, **jobs) == 1
    request_time = m.value(f"{DURATION}_sum", **jobs)
    assert m.bucket(DURATION, 0.2, **jobs) == 1  # not charged the 300 ms in the background
    assert request_time * 6 < m.value(f"{BACKGROUND}_sum", **jobs)
    assert client.get(created.json()["status_url"]).json()["status"] == "done"


def test_failed_jobs_report_their_error(demo_server: Server, client: httpx.Client) -> None:
    set_faults(client, error_rate=1.0)
    job_id = client.post(
        "/v1/jobs", json={"kind": "video", "prompt": "x", "duration_seconds": 3}
    ).json()["job_id"]
    status = wait_until(lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "failed")
    assert status
    result = client.get(f"/v1/jobs/{job_id}/result")
    assert result.status_code == 409
    assert "injected model failure" in result.json()["detail"]
    # The failure happened inside the job, not the request: no 500 and no exception.
    m = wait_for_metrics(demo_server.url, lambda m: m.value(COUNT, http_route="/v1/jobs") == 1)
    assert count(m, "POST", "/v1/jobs", 202) == 1
    assert m.value("http_server_exceptions_total") is None
    assert m.value("demo_generated_media_seconds_total") is None


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian: prometheus) not installed"
)
def test_scrape_passes_promtool(demo_server: Server, client: httpx.Client) -> None:
    client.post(AUDIO, json=audio_body())
    client.post(MUSIC, json={"prompt": "x", "duration_seconds": -1})
    client.get("/v1/jobs/unknown")
    client.get("/v1/audio/stream", params={"prompt": "x", "chunks": 2})
    with connect(f"{demo_server.ws_url}{WS}?token=t") as ws:
        ws.send(json.dumps({"prompt": "x", "chunks": 1}))
        _receive_all(ws)
    set_faults(client, error_rate=1.0)
    assert client.post(AUDIO, json=audio_body(), headers=CLOSE).status_code == 500

    m = wait_for_metrics(
        demo_server.url,
        lambda m: m.value(COUNT) == 6 and m.value("websocket_server_connections_closed_total") == 1,
        show=COUNT,
    )
    assert promtool_problems(m.text) == []
