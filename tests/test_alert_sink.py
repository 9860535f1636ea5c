"""The alert sink over real HTTP: uvicorn in a thread of the test process, on a loopback port,
with the hardened protocol the ``alert-sink`` command uses.

Validation (400/413/422), de-duplication, filters, bounds (memory, disk, receiver labels),
credentials, forwarding and the exact metrics. The subprocess tests (CLI, restart with a
store file) are in test_alert_sink_server.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from inferwatch.alertsink.app import SinkSettings, create_app
from inferwatch.alertsink.server import sink_server
from inferwatch.alertsink.store import NotificationStore
from inferwatch.exposition import MetricsAuth
from tests.support import free_port, scrape, wait_until

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def alert(
    name: str = "InferwatchHighErrorRate",
    *,
    status: str = "firing",
    fingerprint: str = "f00dfeed00000001",
    starts_at: str = "2024-05-01T10:00:00.123456789Z",
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": "critical", "service": "demo", **labels},
        "annotations": {"summary": f"{name} on demo"},
        "startsAt": starts_at,
        "endsAt": "2024-05-01T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], receiver: str = "pager", **fields: Any) -> dict[str, Any]:
    alerts = alerts or (alert(),)
    return {
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="InferwatchHighErrorRate"}',
        "truncatedAlerts": 0,
        "status": "resolved" if all(a["status"] == "resolved" for a in alerts) else "firing",
        "receiver": receiver,
        "groupLabels": {"alertname": alerts[0]["labels"]["alertname"]},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
        **fields,
    }


@dataclass
class Sink:
    url: str
    app: FastAPI
    http: httpx.Client

    def post(self, body: Any, path: str = "/alerts/pager") -> httpx.Response:
        return self.http.post(path, json=body)

    def notifications(self, **filters: str) -> list[dict[str, Any]]:
        response = self.http.get("/notifications", params=filters)
        assert response.status_code == 200, response.text
        return list(response.json())

    def metric(self, name: str, **labels: str) -> float | None:
        """The sink's own sample, as :func:`tests.support.metrics.value` finds it in a scrape."""
        return scrape(self.url).value(name, **labels)


StartSink = Callable[..., Sink]


@contextlib.contextmanager
def running(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = sink_server(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    thread = threading.Thread(target=server.run, name="alert-sink", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 10.0, message="sink start")
        assert server.started, "the alert sink did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10.0)


@pytest.fixture
def start_sink() -> Iterator[StartSink]:
    with contextlib.ExitStack() as stack:

        def start(**settings: Any) -> Sink:
            app = create_app(SinkSettings(**settings))
            url = stack.enter_context(running(app))
            http = stack.enter_context(httpx.Client(base_url=url, timeout=10.0))
            return Sink(url, app, http)

        yield start


@pytest.fixture
def sink(start_sink: StartSink) -> Sink:
    return start_sink(max_body_bytes=4096)


def test_valid_payload_is_recorded_with_exact_fields(sink: Sink) -> None:
    response = sink.post(payload(alert(model="musicgen-small")))
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 1, "duplicates": 0}

    [record] = sink.notifications()
    received = record.pop("received_at")
    assert TIMESTAMP.fullmatch(received)
    assert record.pop("last_received_at") == received
    assert record == {
        "id": 1,
        "endpoint": "pager",
        "receiver": "pager",
        "group_key": '{}/{severity="critical"}:{alertname="InferwatchHighErrorRate"}',
        "status": "firing",
        "alertname": "InferwatchHighErrorRate",
        "fingerprint": "f00dfeed00000001",
        "starts_at": "2024-05-01T10:00:00.123456789Z",
        "ends_at": "0001-01-01T00:00:00Z",
        "labels": {
            "alertname": "InferwatchHighErrorRate",
            "severity": "critical",
            "service": "demo",
            "model": "musicgen-small",
        },
        "annotations": {"summary": "InferwatchHighErrorRate on demo"},
        "generator_url": "http://prometheus:9090/graph?g0.expr=up",
        "repeats": 0,
    }


def test_every_alert_of_a_notification_is_recorded_and_extra_fields_are_ignored(
    sink: Sink,
) -> None:
    body = payload(alert("A", fingerprint="a1"), alert("B", fingerprint="b1"), futureField={"x": 1})
    del body["truncatedAlerts"], body["commonLabels"]  # optional in the schema
    assert sink.post(body, path="/alerts").json() == {"recorded": 2, "duplicates": 0}
    records = sink.notifications()
    assert [(r["alertname"], r["endpoint"]) for r in records] == [("A", None), ("B", None)]


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"\xff\xfe garbage", b'{"version": "4",'],
    ids=["broken", "empty", "not-utf8", "truncated"],
)
def test_malformed_json_is_400(sink: Sink, body: bytes) -> None:
    response = sink.http.post(
        "/alerts/pager", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert sink.notifications() == []
    assert sink.metric("inferwatch_alertsink_rejected_total", reason="malformed") == 1


def test_json_nested_too_deeply_is_400_not_500(sink: Sink) -> None:
    body = b"[" * 2000 + b"]" * 2000  # within the 4 KiB body limit, past the recursion limit
    response = sink.http.post(
        "/alerts/pager", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "body is JSON nested too deeply"}
    assert sink.metric("inferwatch_alertsink_rejected_total", reason="malformed") == 1


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([payload()], ""),
        (_without(payload(), "alerts"), "alerts"),
        (payload(alerts=[]), "alerts"),
        (_without(payload(), "receiver"), "receiver"),
        (payload(status="pending"), "status"),
        (payload({**alert(), "labels": {"alertname": "X", "count": 3}}), "alerts.0.labels.count"),
        (payload({**alert(), "startsAt": "yesterday"}), "alerts.0.startsAt"),
        (payload(_without(alert(), "fingerprint")), "alerts.0.fingerprint"),
    ],
    ids=[
        "array",
        "no-alerts",
        "empty-alerts",
        "no-receiver",
        "bad-status",
        "label-not-string",
        "bad-timestamp",
        "no-fingerprint",
    ],
)
def test_schema_invalid_payload_is_422(sink: Sink, body: Any, field: str) -> None:
    response = sink.post(body)
    assert response.status_code == 422, response.text
    locations = [".".join(map(str, error["loc"])) for error in response.json()["detail"]]
    assert any(loc == field for loc in locations) if field else locations, locations
    assert sink.notifications() == []
    assert sink.metric("inferwatch_alertsink_rejected_total", reason="invalid") == 1


@pytest.mark.parametrize("version", ["3", 4, "5", None])
def test_wrong_version_is_422(sink: Sink, version: Any) -> None:
    response = sink.post(payload(version=version))
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["version"]]


def _big_payload(size: int) -> bytes:
    body = json.dumps(payload(alert(padding="x" * size))).encode()
    assert len(body) > size
    return body


def test_oversized_body_with_content_length_is_413(sink: Sink) -> None:
    response = sink.http.post("/alerts/pager", content=_big_payload(5000))
    assert response.status_code == 413
    assert sink.metric("inferwatch_alertsink_rejected_total", reason="too_large") == 1
    # A body just under the limit is fine.
    fits = json.dumps(payload(alert(padding="x" * 3000))).encode()
    assert len(fits) <= 4096
    assert sink.http.post("/alerts/pager", content=fits).status_code == 200


def test_oversized_chunked_body_is_413(sink: Sink) -> None:
    body = _big_payload(5000)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    response = sink.http.post("/alerts/pager", content=chunks())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert sink.notifications() == []


def _raw_request(url: str, head: str, body_parts: Iterator[bytes]) -> bytes:
    """Send ``head`` then body parts until the server answers; return its status line."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5.0) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        for part in body_parts:
            with contextlib.suppress(BlockingIOError):
                answer = sock.recv(4096)
                if answer:
                    return answer.split(b"\r\n", 1)[0]
            sock.sendall(part)
        sock.setblocking(True)
        return sock.recv(4096).split(b"\r\n", 1)[0]


def test_content_length_over_the_limit_is_refused_before_the_body_arrives(sink: Sink) -> None:
    # 10 MiB announced, nothing sent: the answer must not wait for the body.
    head = (
        "POST /alerts/pager HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    )
    assert _raw_request(sink.url, head, iter(())) == b"HTTP/1.1 413 Request Entity Too Large"


def test_endless_chunked_body_is_cut_off_at_the_limit(sink: Sink) -> None:
    head = (
        "POST /alerts/pager HTTP/1.1\r\nHost: sink\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while sent < 1024 * 1024:  # the server must answer long before this
            sent += 1000
            yield b"3e8\r\n" + b" " * 1000 + b"\r\n"
            time.sleep(0.001)

    assert _raw_request(sink.url, head, endless()) == b"HTTP/1.1 413 Request Entity Too Large"
    assert sent < 64 * 1024


def test_repeated_notifications_are_stored_once_and_counted(sink: Sink) -> None:
    first = payload(alert(fingerprint="aa"), alert("Other", fingerprint="bb"))
    assert sink.post(first).json() == {"recorded": 2, "duplicates": 0}
    # Alertmanager's repeat_interval re-sends the very same alerts.
    assert sink.post(first).json() == {"recorded": 0, "duplicates": 2}
    assert sink.post(payload(alert(fingerprint="aa"))).json() == {"recorded": 0, "duplicates": 1}
    # Resolving, a new startsAt (the alert fired again) or another receiver is news.
    assert sink.post(payload(alert(fingerprint="aa", status="resolved"))).json()["recorded"] == 1
    again = alert(fingerprint="aa", starts_at="2024-05-01T11:00:00Z")
    assert sink.post(payload(again)).json()["recorded"] == 1
    assert sink.post(payload(alert(fingerprint="aa"), receiver="chat")).json()["recorded"] == 1

    records = sink.notifications()
    assert [(r["receiver"], r["fingerprint"], r["status"], r["repeats"]) for r in records] == [
        ("pager", "aa", "firing", 2),
        ("pager", "bb", "firing", 1),
        ("pager", "aa", "resolved", 0),
        ("pager", "aa", "firing", 0),
        ("chat", "aa", "firing", 0),
    ]
    assert records[0]["last_received_at"] >= records[0]["received_at"]
    assert sink.metric("inferwatch_alertsink_duplicates_total") == 3


def test_filters_and_clear(sink: Sink) -> None:
    sink.post(payload(alert("A", fingerprint="1")))
    sink.post(payload(alert("A", fingerprint="1", status="resolved")))
    sink.post(payload(alert("B", fingerprint="2"), receiver="chat"), path="/alerts/chat")

    def names(**filters: str) -> list[tuple[str, str, str]]:
        return [(r["receiver"], r["alertname"], r["status"]) for r in sink.notifications(**filters)]

    assert names(receiver="pager") == [("pager", "A", "firing"), ("pager", "A", "resolved")]
    assert names(alertname="B") == [("chat", "B", "firing")]
    assert names(status="resolved") == [("pager", "A", "resolved")]
    assert names(receiver="pager", alertname="A", status="firing") == [("pager", "A", "firing")]
    assert names(receiver="nobody") == []

    response = sink.http.delete("/notifications")
    assert response.json() == {"cleared": 3}
    assert sink.notifications() == []
    assert sink.http.get("/healthz").json() == {"status": "ok", "records": 0}


def test_memory_is_bounded_oldest_dropped(start_sink: StartSink) -> None:
    sink = start_sink(max_records=2)
    for n in range(3):
        sink.post(payload(alert(f"A{n}", fingerprint=str(n))))
    assert [r["alertname"] for r in sink.notifications()] == ["A1", "A2"]


def test_receiver_label_values_are_capped(start_sink: StartSink) -> None:
    sink = start_sink(max_receivers=2)
    for n, receiver in enumerate(["pager", "chat", "spam-1", "spam-2", "pager"]):
        body = payload(alert(fingerprint=str(n)), receiver=receiver)
        assert sink.post(body, path=f"/alerts/{receiver}").status_code == 200
    metrics = scrape(sink.url)
    counted = {
        s.labels["receiver"]: s.value
        for s in metrics.samples("inferwatch_alertsink_notifications_total")
    }
    assert counted == {"pager": 2, "chat": 1, "_OTHER": 2}
    alerts = {
        s.labels["receiver"]: s.value for s in metrics.samples("inferwatch_alertsink_alerts_total")
    }
    assert alerts == {"pager": 2, "chat": 1, "_OTHER": 2}
    # The records keep what was sent: only the metrics are bounded.
    assert [r["receiver"] for r in sink.notifications(receiver="spam-2")] == ["spam-2"]


def test_credentials_guard_every_endpoint_but_healthz(start_sink: StartSink) -> None:
    sink = start_sink(auth=MetricsAuth.bearer("sink-t0ken"))
    good = {"Authorization": "Bearer sink-t0ken"}
    bad = {"Authorization": "Bearer wrong"}
    assert sink.http.post("/alerts/pager", json=payload(), headers=good).status_code == 200
    for headers in ({}, bad):
        assert sink.http.delete("/notifications", headers=headers).status_code == 401
        assert sink.http.get("/notifications", headers=headers).status_code == 401
        assert sink.http.post("/alerts/pager", json=payload(), headers=headers).status_code == 401
        assert sink.http.post("/alerts", json=payload(), headers=headers).status_code == 401
        assert sink.http.get("/metrics", headers=headers).status_code == 401
    denied = sink.http.delete("/notifications")
    assert denied.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert sink.http.get("/healthz").json() == {"status": "ok", "records": 1}
    assert len(sink.http.get("/notifications", headers=good).json()) == 1
    assert sink.http.delete("/notifications", headers=good).json() == {"cleared": 1}
    assert sink.http.get("/healthz").json() == {"status": "ok", "records": 0}
    assert "http_server_request_duration_seconds" in sink.http.get("/metrics", headers=good).text


def test_metrics_count_exactly(sink: Sink) -> None:
    sink.post(payload(alert("A", fingerprint="1"), alert("B", fingerprint="2")))
    sink.post(payload(alert("A", fingerprint="1")))  # a repeat
    sink.post(payload(alert("A", fingerprint="1", status="resolved")))
    sink.post(payload(alert("C", fingerprint="3"), receiver="chat"), path="/alerts/chat")
    sink.http.post("/alerts/pager", content=b"{")
    sink.post(payload(version="3"))
    sink.post(payload(version="3"))
    sink.http.post("/alerts/pager", content=_big_payload(5000))

    metrics = scrape(sink.url)
    expected = {
        ("inferwatch_alertsink_notifications_total", ("pager", "firing")): 2,
        ("inferwatch_alertsink_notifications_total", ("pager", "resolved")): 1,
        ("inferwatch_alertsink_notifications_total", ("chat", "firing")): 1,
        ("inferwatch_alertsink_alerts_total", ("pager", "firing")): 2,
        ("inferwatch_alertsink_alerts_total", ("pager", "resolved")): 1,
        ("inferwatch_alertsink_alerts_total", ("chat", "firing")): 1,
    }
    for (name, (receiver, status)), count in expected.items():
        assert metrics.value(name, receiver=receiver, status=status) == count, (
            f"{name}{{{receiver},{status}}}\n{metrics.describe(name)}"
        )
    assert len(metrics.samples("inferwatch_alertsink_notifications_total")) == 3
    assert metrics.value("inferwatch_alertsink_duplicates_total") == 1
    rejected = {
        s.labels["reason"]: s.value for s in metrics.samples("inferwatch_alertsink_rejected_total")
    }
    assert rejected == {"malformed": 1, "invalid": 2, "too_large": 1}
    # instrument_app records the sink's own HTTP traffic too.
    route = "/alerts/{receiver}"
    assert metrics.value("http_server_request_duration_seconds_count", http_route=route) == 8


def test_forwarding_to_dead_urls_neither_blocks_nor_fails(start_sink: StartSink) -> None:
    with socket.socket() as blackhole:  # accepts connections into its backlog, never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(8)
        silent = f"http://127.0.0.1:{blackhole.getsockname()[1]}/hook"
        refused = f"http://127.0.0.1:{free_port()}/hook"
        sink = start_sink(forward_urls=(silent, refused), forward_timeout=5.0)

        started = time.monotonic()
        response = sink.post(payload())
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert elapsed < 2.0, f"the answer waited {elapsed:.2f} s for the forwards"
        assert len(sink.notifications()) == 1
        wait_until(
            lambda: sink.metric("inferwatch_alertsink_forwards_total", result="error") == 1,
            5.0,
            message="the refused forward to be counted as an error",
        )


def test_forwarding_delivers_the_notification(start_sink: StartSink) -> None:
    downstream = start_sink()
    sink = start_sink(forward_urls=(f"{downstream.url}/alerts/relayed",))
    body = payload(alert(fingerprint="relay"))
    assert sink.post(body).status_code == 200
    [record] = wait_until(lambda: downstream.notifications(), 5.0, message="forwarded alert")
    assert (record["endpoint"], record["receiver"], record["fingerprint"]) == (
        "relayed",
        "pager",
        "relay",
    )
    wait_until(
        lambda: sink.metric("inferwatch_alertsink_forwards_total", result="ok") == 1,
        5.0,
        message="the forward to be counted",
    )


def _store_payload(fingerprint: str) -> Any:
    from inferwatch.alertsink.models import WebhookPayload

    return WebhookPayload.model_validate(payload(alert(fingerprint=fingerprint)))


def test_store_file_survives_reopening_and_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "sink" / "notifications.jsonl"
    store = NotificationStore(path=path)
    store.add(_store_payload("one"))
    store.add(_store_payload("two"))
    store.close()
    with open(path, "a", encoding="utf-8") as file:
        file.write('{"id": 3, "receiver": "pa')  # a crash in the middle of a write

    reopened = NotificationStore(path=path)
    assert [r["fingerprint"] for r in reopened.query()] == ["one", "two"]
    assert reopened.add(_store_payload("one")) == ([], 1)  # still de-duplicated
    [record], _ = reopened.add(_store_payload("three"))
    assert record["id"] == 3
    reopened.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["fingerprint"] for line in lines] == ["one", "two", "three"]


def test_clear_empties_the_store_file(tmp_path: Path) -> None:
    path = tmp_path / "notifications.jsonl"
    store = NotificationStore(path=path)
    store.add(_store_payload("one"))
    assert store.clear() == 1
    store.add(_store_payload("two"))
    store.close()
    assert [r["fingerprint"] for r in NotificationStore(path=path).query()] == ["two"]


def test_store_file_stays_bounded_while_running(tmp_path: Path) -> None:
    path = tmp_path / "notifications.jsonl"
    store = NotificationStore(max_records=2, path=path)
    sizes = []
    for n in range(7):
        store.add(_store_payload(str(n)))
        sizes.append(len(path.read_text(encoding="utf-8").splitlines()))
    # Appended until more than twice max_records lines, then rewritten with the kept ones.
    assert sizes == [1, 2, 3, 4, 2, 3, 4]
    assert [r["fingerprint"] for r in store.query()] == ["5", "6"]
    store.close()
    reopened = NotificationStore(max_records=2, path=path)
    assert [r["fingerprint"] for r in reopened.query()] == ["5", "6"]
    [record], _ = reopened.add(_store_payload("7"))
    assert record["id"] == 8
    reopened.close()
