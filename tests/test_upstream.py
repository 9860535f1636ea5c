"""Calls to a dependency (``inferwatch.ai.Upstream``) against a real upstream service: a second
uvicorn process (``inferwatch.demo.upstream``) whose failure rate and outage the tests switch.

Every figure is compared with what the test itself saw happen: the attempts each call made
and how it ended, and the upstream's own count of the answers it gave.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import tenacity
from prometheus_client.registry import CollectorRegistry

from inferwatch.ai import CircuitBreaker, CircuitOpenError, Upstream
from tests.support import Server, free_port, registry_samples, serve, value

SEED = 20240501


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "inferwatch.demo.upstream", "--port", str(port)]
    with serve([*command, "--seed", str(SEED), "--time-scale", "0.01"], port=port,
               log_path=tmp_path / "upstream.log") as server:  # fmt: skip
        yield server


def faults(server: Server, **change: object) -> None:
    httpx.put(f"{server.url}/admin/faults", json=change, timeout=5).raise_for_status()


def served(server: Server) -> dict[str, int]:
    return dict(httpx.get(f"{server.url}/admin/served", timeout=5).json())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_transient_failures_are_retried_and_the_recovery_rate_is_the_clients_truth(
    upstream: Server,
) -> None:
    """30 % of the upstream's answers are 503: every retry, every outcome and every attempt
    in the metrics is one the client made, and recovered / (recovered + failed) is the share
    of first-attempt failures that a retry saved."""
    registry = CollectorRegistry()
    # A breaker that never opens here: this test is about retries.
    tts = Upstream("tts", registry, breaker=CircuitBreaker(failure_threshold=10_000))
    faults(upstream, failure_rate=0.3)
    attempts_of: list[int] = []
    ended: Counter[str] = Counter()

    with httpx.Client(base_url=upstream.url, transport=tts.transport(), timeout=5) as client:

        @tts.retrying(wait=tenacity.wait_none())
        def speak(text: str) -> bytes:
            attempts_of[-1] += 1
            response = client.post("/v1/speech", json={"text": text})
            response.raise_for_status()
            return response.content

        for n in range(200):
            attempts_of.append(0)
            try:
                speak(f"line {n}")
            except httpx.HTTPStatusError:
                ended["failed"] += 1
            else:
                ended["success" if attempts_of[-1] == 1 else "recovered"] += 1

    truth = served(upstream)
    attempts = sum(attempts_of)
    assert truth == {"200": ended["success"] + ended["recovered"], "503": attempts - truth["200"]}
    assert ended["recovered"] > 0 and ended["failed"] > 0, "the seed gives both"
    calls = "inferwatch_upstream_calls_total"
    for outcome in ("success", "recovered", "failed"):
        assert value(registry, calls, peer="tts", outcome=outcome) == ended[outcome]
    assert value(registry, calls, peer="tts") == 200
    assert value(registry, "inferwatch_upstream_retries_total", peer="tts", error_type="503") == (
        attempts - 200
    )
    duration = "http_client_request_duration_seconds_count"
    assert value(registry, duration, peer="tts") == attempts
    ok = {"http_request_method": "POST", "http_response_status_code": "200"}
    assert value(registry, duration, peer="tts", error_type="", **ok) == truth["200"]
    failed = {"http_response_status_code": "503", "error_type": "503"}
    assert value(registry, duration, peer="tts", **failed) == truth["503"]
    recovered = value(registry, calls, peer="tts", outcome="recovered")
    ratio = recovered / (recovered + value(registry, calls, peer="tts", outcome="failed"))
    assert ratio == ended["recovered"] / (ended["recovered"] + ended["failed"])


def test_an_outage_opens_the_breaker_then_a_probe_closes_it(upstream: Server) -> None:
    """Three failures in a row open the breaker: the next call is refused without reaching
    the upstream; once the reset timeout has passed one probe goes through, and its success
    closes the breaker, recording how long the outage lasted."""
    registry = CollectorRegistry()
    clock = FakeClock()
    llm = Upstream(
        "llm", registry, breaker=CircuitBreaker(failure_threshold=3, reset_timeout=30, clock=clock)
    )

    def state(name: str) -> float:
        return value(registry, "inferwatch_upstream_circuit_state", peer="llm", state=name)

    def entered(name: str) -> float:
        labels = {"peer": "llm", "state": name}
        return value(registry, "inferwatch_upstream_circuit_transitions_total", **labels)

    assert (state("closed"), state("open"), state("half_open")) == (1, 0, 0)

    async def scenario() -> None:
        transport = llm.async_transport()
        async with httpx.AsyncClient(base_url=upstream.url, transport=transport) as client:

            @llm.retrying(wait=tenacity.wait_none())
            async def complete(prompt: str) -> str:
                response = await client.post("/v1/completions", json={"prompt": prompt})
                response.raise_for_status()
                return str(response.json()["text"])

            faults(upstream, outage=True)
            with pytest.raises(httpx.HTTPStatusError):
                await complete("first")  # three attempts, three 503s: the breaker opens
            assert (state("closed"), state("open"), entered("open")) == (0, 1, 1)
            with pytest.raises(CircuitOpenError):
                await complete("second")  # refused at once, never retried
            assert served(upstream) == {"503": 3}
            faults(upstream, outage=False)
            clock.now += 29.0
            with pytest.raises(CircuitOpenError):
                await complete("still open")
            clock.now += 1.0
            assert await complete("the probe") == "probe the"
            assert await complete("after") == "after"

    asyncio.run(scenario())
    assert served(upstream) == {"503": 3, "200": 2}
    assert (state("closed"), state("open"), state("half_open")) == (1, 0, 0)
    assert (entered("open"), entered("half_open"), entered("closed")) == (1, 1, 1)
    calls = "inferwatch_upstream_calls_total"
    outcomes = {o: value(registry, calls, peer="llm", outcome=o) for o in ("failed", "rejected")}
    assert outcomes == {"failed": 1, "rejected": 2}
    assert value(registry, calls, peer="llm", outcome="success") == 2
    recovery = "inferwatch_upstream_circuit_recovery_seconds"
    assert value(registry, f"{recovery}_count", peer="llm") == 1
    assert value(registry, f"{recovery}_sum", peer="llm") == 30.0
    # Refused attempts never reached the upstream, so they have no duration.
    assert value(registry, "http_client_request_duration_seconds_count", peer="llm") == 5


def test_a_failed_probe_opens_the_breaker_again(upstream: Server) -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10, clock=clock)
    tts = Upstream("tts", registry, breaker=breaker)
    faults(upstream, outage=True)
    with httpx.Client(base_url=upstream.url, transport=tts.transport()) as client:
        assert client.get("/healthz").status_code == 200  # 2xx: the breaker stays closed
        assert client.post("/v1/speech", json={"text": "a"}).status_code == 503
        assert breaker.state == "open"
        clock.now += 10
        assert client.post("/v1/speech", json={"text": "b"}).status_code == 503  # the probe
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            client.post("/v1/speech", json={"text": "c"})
    transitions = "inferwatch_upstream_circuit_transitions_total"
    assert value(registry, transitions, peer="tts", state="open") == 2
    assert value(registry, transitions, peer="tts", state="half_open") == 1
    assert value(registry, transitions, peer="tts", state="closed") == 0
    # Never closed again, so no recovery was ever observed.
    assert value(registry, "inferwatch_upstream_circuit_recovery_seconds_count", peer="tts") is None


def test_a_refused_connection_is_an_error_type_and_client_errors_do_not_trip_the_breaker(
    upstream: Server,
) -> None:
    registry = CollectorRegistry()
    breaker = CircuitBreaker(failure_threshold=2)
    tts = Upstream("tts", registry, breaker=breaker)
    with httpx.Client(base_url=upstream.url, transport=tts.transport()) as client:
        for _ in range(3):  # 422: the caller's mistake, not the dependency's
            assert client.post("/v1/speech", json={"text": ""}).status_code == 422
    assert breaker.state == "closed"
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with httpx.Client(base_url=dead, transport=tts.transport()) as client:
        for _ in range(2):
            with pytest.raises(httpx.ConnectError):
                client.get("/v1/anything")
    assert breaker.state == "open"
    duration = "http_client_request_duration_seconds_count"
    refused = {"http_response_status_code": "", "error_type": "httpx.ConnectError"}
    assert value(registry, duration, peer="tts", http_request_method="GET", **refused) == 2
    rejected = {"http_response_status_code": "422", "error_type": "422"}
    assert value(registry, duration, peer="tts", **rejected) == 3


def test_labels_are_bounded_and_never_name_the_url(upstream: Server) -> None:
    registry = CollectorRegistry()
    first = Upstream("tts", registry, breaker=None, max_peers=2)
    Upstream("llm", registry, breaker=None)
    third = Upstream("embeddings", registry, breaker=None)
    assert (first.peer, third.peer) == ("tts", "_OTHER")
    with httpx.Client(base_url=upstream.url, transport=first.transport()) as client:
        assert client.request("BREW", "/healthz").status_code == 400
    duration = "http_client_request_duration_seconds_count"
    assert value(registry, duration, peer="tts", http_request_method="_OTHER") == 1
    port = str(upstream.port)
    for _, labels in registry_samples(registry):
        assert not any(port in v or "127.0.0.1" in v for _, v in labels)


def test_protect_guards_a_call_by_any_client() -> None:
    """A dependency reached by another client than httpx (Redis, gRPC, an SDK): the breaker
    opens on its failures and refuses calls, with no HTTP metrics."""
    registry = CollectorRegistry()
    clock = FakeClock()
    cache = Upstream("redis", registry, breaker=CircuitBreaker(failure_threshold=2, clock=clock))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        address = closed.getsockname()
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError), cache.protect():
            socket.create_connection(address, timeout=1).close()
    with pytest.raises(CircuitOpenError), cache.protect():
        pytest.fail("an open breaker runs nothing")
    assert value(registry, "inferwatch_upstream_circuit_state", peer="redis", state="open") == 1
    assert value(registry, "http_client_request_duration_seconds_count") is None


def test_an_error_in_the_bookkeeping_never_fails_the_call(upstream: Server) -> None:
    registry = CollectorRegistry()

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("a bug in a user's failure rule")

    tts = Upstream("tts", registry, is_failure=broken)
    with httpx.Client(base_url=upstream.url, transport=tts.transport()) as client:

        @tts.retrying(wait=tenacity.wait_none())
        def speak() -> int:
            response = client.post("/v1/speech", json={"text": ""})
            response.raise_for_status()
            return response.status_code

        with pytest.raises(httpx.HTTPStatusError):  # the 422 itself, unchanged
            speak()
    errors = "inferwatch_instrumentation_errors_total"
    assert value(registry, errors) == value(registry, errors, component="ai.upstream.call") == 1
