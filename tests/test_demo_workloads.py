"""The demo's AI workload over real HTTP: models, the priority queue and batches,
cancellation, the conditioning cache, the database pool and the state faults.

Each test starts its own ``inferwatch demo`` (time scale 0.01, SQLite, in-memory cache), so
every count below is exactly what the test caused.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support import Metrics, Server, StartDemo, wait_for_metrics
from tests.support.promtool import needs_promtool, promtool_problems

AUDIO = "/v1/audio/generate"
MUSIC = "/v1/music/generate"
COUNT = "http_server_request_duration_seconds_count"
LOADED = "inferwatch_model_loaded"
UNLOADS = "inferwatch_model_unloads_total"
LOAD = "inferwatch_model_load_duration_seconds"
REQUESTS = "inferwatch_inference_requests_total"
GETS = "inferwatch_cache_gets_total"
CACHE = {"cache": "demo-conditioning"}
DB = {"db_system_name": "sqlite", "db_client_connection_pool_name": "demo-db"}
MIB = 1024 * 1024


def audio(prompt: str = "rain on a tin roof", **extra: object) -> dict[str, object]:
    return {"prompt": prompt, "duration_seconds": 1.0, **extra}


def put_faults(server: Server, **faults: object) -> dict[str, object]:
    response = httpx.put(f"{server.url}/admin/faults", json=faults, timeout=10.0)
    assert response.status_code == 200, response.text
    return response.json()


def post(server: Server, path: str, body: dict[str, object], timeout: float = 10.0) -> int:
    with httpx.Client(base_url=server.url, timeout=timeout) as client:
        return client.post(path, json=body).status_code


def until(server: Server, predicate: Callable[[Metrics], bool], show: str = "") -> Metrics:
    return wait_for_metrics(server.url, predicate, timeout=15.0, show=show)


def http_count(m: Metrics, route: str, status: int) -> float | None:
    return m.value(COUNT, http_route=route, http_response_status_code=str(status))


def test_preloaded_models_and_lru_unloading(start_demo: StartDemo) -> None:
    server = start_demo("--max-models", "2", "--preload", "speech-small,musicgen-small")
    m = until(server, lambda m: m.value(LOADED) == 2, show=LOADED)  # loaded before serving
    cpu = {"device": "cpu"}
    assert m.value(LOADED, model="speech-small", version="1.2.0", **cpu) == 1
    assert m.value(LOADED, model="musicgen-small", version="1.0.0", **cpu) == 1
    assert m.value(f"{LOAD}_count", outcome="success") == 2
    assert m.value(f"{LOAD}_count", model="speech-small", outcome="success") == 1
    phases = m.label_values("inferwatch_model_load_phase_duration_seconds_count", "phase")
    assert phases == {"download", "deserialize", "to_device", "warmup"}
    assert m.samples(UNLOADS) == []

    # A third model: the least recently used one (speech-small, loaded first) makes room.
    assert post(server, MUSIC, audio(model="musicgen-large")) == 200
    m = until(server, lambda m: m.value(UNLOADS) == 1, show=UNLOADS)
    assert m.value(UNLOADS, model="speech-small", reason="lru") == 1
    assert {s.labels["model"] for s in m.samples(LOADED)} == {"musicgen-small", "musicgen-large"}
    assert m.value(LOADED) == 2

    # speech-small again: now musicgen-small is the least recently used.
    assert post(server, AUDIO, audio()) == 200
    m = until(server, lambda m: m.value(UNLOADS) == 2, show=UNLOADS)
    assert m.value(UNLOADS, model="musicgen-small", reason="lru") == 1
    assert m.value(UNLOADS, model="speech-small", reason="lru") == 1
    assert {s.labels["model"] for s in m.samples(LOADED)} == {"musicgen-large", "speech-small"}
    assert m.value(f"{LOAD}_count", outcome="success") == 4


def test_unknown_or_mismatched_models_are_422(start_demo: StartDemo) -> None:
    server = start_demo()
    assert post(server, AUDIO, audio(model="gpt-9")) == 422
    assert post(server, AUDIO, audio(model="musicgen-small")) == 422  # music, not speech
    assert post(server, AUDIO, audio(priority="urgent")) == 422
    job = {"kind": "video", "prompt": "x", "duration_seconds": 1, "model": "speech-small"}
    response = httpx.post(f"{server.url}/v1/jobs", json=job)
    assert response.status_code == 422
    assert "generates audio, not video" in response.text
    m = until(server, lambda m: m.value(COUNT) == 4, show=COUNT)
    assert m.samples(REQUESTS) == []  # refused before any inference began


def test_model_load_faults(start_demo: StartDemo) -> None:
    server = start_demo("--preload", "none")
    put_faults(server, model_load_failure_rate=1.0)
    with httpx.Client(base_url=server.url, timeout=10.0, headers={"connection": "close"}) as c:
        assert c.post(AUDIO, json=audio()).status_code == 500
    failures = "inferwatch_model_load_failures_total"
    m = until(server, lambda m: m.value(failures) == 1, show=failures)
    assert m.value(failures, model="speech-small", phase="deserialize", reason="error") == 1
    assert m.value(f"{LOAD}_count", outcome="failure") == 1
    assert m.samples(LOADED) == []
    assert m.value(REQUESTS, model="speech-small", outcome="server_error") == 1

    # Slow initialisation: 0.6 s of wall clock on top of ~20 ms of (scaled) phases.
    put_faults(server, model_load_failure_rate=0.0, model_init_delay_seconds=0.6)
    assert post(server, AUDIO, audio()) == 200
    m = until(server, lambda m: m.value(f"{LOAD}_count", outcome="success") == 1, show=LOAD)
    ok = {"model": "speech-small", "outcome": "success"}
    assert m.bucket(LOAD, 0.5, **ok) == 0
    assert m.bucket(LOAD, 1.0, **ok) == 1
    warmup = {"model": "speech-small", "phase": "warmup"}
    assert m.bucket("inferwatch_model_load_phase_duration_seconds", 0.5, **warmup) == 0
    assert m.bucket("inferwatch_model_load_phase_duration_seconds", 1.0, **warmup) == 1
    assert m.value(LOADED, model="speech-small") == 1


def test_a_burst_is_batched_and_the_queue_drains(start_demo: StartDemo) -> None:
    # A 1 s batch window (100 model seconds at time scale 0.01): a batch closes when full.
    server = start_demo("--max-batch-size", "4", "--batch-window", "100")
    priorities = ["high", "high", "normal", "normal", "low", "low"]
    bodies = [audio(f"prompt {i}", priority=p) for i, p in enumerate(priorities)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        statuses = list(pool.map(lambda body: post(server, AUDIO, body), bodies))
    assert statuses == [200] * 6

    m = until(server, lambda m: m.value(REQUESTS) == 6, show=REQUESTS)
    batch = {"model": "speech-small"}
    assert m.value("inferwatch_batch_requests_count", **batch) == 2  # 4, then the other 2
    assert m.value("inferwatch_batch_requests_sum", **batch) == 6
    assert m.bucket("inferwatch_batch_requests", 2, **batch) == 1
    assert m.bucket("inferwatch_batch_requests", 4, **batch) == 2
    assert m.value("inferwatch_batch_wait_seconds_count", **batch) == 2
    # The second batch waited out the window for requests that never came.
    assert m.bucket("inferwatch_batch_wait_seconds", 0.5, **batch) == 1
    assert m.value(REQUESTS, model="speech-small", outcome="success") == 6
    for priority in ("high", "normal", "low"):
        assert m.samples("inferwatch_queue_depth", priority=priority)[0].value == 0
    stages = "inferwatch_inference_stage_duration_seconds_count"
    for stage in ("preprocess", "queue", "inference", "postprocess"):
        assert m.value(stages, model="speech-small", stage=stage) == 6, stage
    output = "inferwatch_inference_output_units_total"
    assert m.value(output, model="speech-small", unit="audio_seconds") == 6.0
    assert m.value("inferwatch_inference_requests_in_flight") == 0


def test_timeouts_and_cancellations_leave_the_queue(start_demo: StartDemo) -> None:
    # One request alone waits the whole 1 s batch window in the queue.
    server = start_demo("--max-batch-size", "4", "--batch-window", "100")
    put_faults(server, timeout_seconds=0.2)
    assert post(server, AUDIO, audio()) == 504
    m = until(server, lambda m: m.value(REQUESTS) == 1, show=REQUESTS)
    assert m.value(REQUESTS, outcome="timeout") == 1
    assert m.samples("inferwatch_inference_cancellations_total") == []

    put_faults(server, timeout_seconds=30.0)
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 0.3 s
        post(server, AUDIO, audio(), timeout=0.3)
    cancellations = "inferwatch_inference_cancellations_total"
    m = until(server, lambda m: m.value(cancellations) == 1, show=cancellations)
    assert m.value(cancellations, model="speech-small", stage="queue") == 1
    assert m.value(REQUESTS, outcome="cancelled") == 1
    assert m.value("inferwatch_queue_depth") == 0
    m = until(server, lambda m: http_count(m, AUDIO, 499) == 1, show=COUNT)
    assert http_count(m, AUDIO, 504) == 1
    # Both left the queue before the window closed: no batch ever ran.
    assert m.samples("inferwatch_batch_requests_count") == []


def test_a_full_queue_rejects_with_429(start_demo: StartDemo) -> None:
    server = start_demo("--max-queue", "1", "--batch-window", "100")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, server, AUDIO, audio("first"))
        until(server, lambda m: m.value("inferwatch_queue_depth") == 1)
        assert post(server, AUDIO, audio("second")) == 429
        assert first.result() == 200
    m = until(server, lambda m: m.value(REQUESTS) == 2, show=REQUESTS)
    assert m.value(REQUESTS, model="speech-small", outcome="rejected") == 1
    assert m.value(REQUESTS, model="speech-small", outcome="success") == 1
    assert http_count(m, AUDIO, 429) == 1


def test_cache_hits_misses_and_a_cold_cache(start_demo: StartDemo) -> None:
    server = start_demo()
    for prompt in ("waves", "waves", "waves", "wind"):
        assert post(server, AUDIO, audio(prompt)) == 200
    m = until(server, lambda m: m.value(GETS, **CACHE) == 4, show=GETS)
    assert m.value(GETS, result="miss", **CACHE) == 2
    assert m.value(GETS, result="hit", **CACHE) == 2
    assert m.value("inferwatch_cache_puts_total", **CACHE) == 2
    assert m.value("inferwatch_cache_entries", **CACHE) == 2
    assert m.value("inferwatch_cache_load_duration_seconds_count", **CACHE) == 2

    put_faults(server, cold_cache=True)  # empties the cache, then every lookup misses
    for _ in range(2):
        assert post(server, AUDIO, audio("waves")) == 200
    m = until(server, lambda m: m.value(GETS, **CACHE) == 6, show=GETS)
    assert m.value(GETS, result="miss", **CACHE) == 4
    assert m.value(GETS, result="hit", **CACHE) == 2
    assert m.value("inferwatch_cache_evictions_total", reason="manual", **CACHE) == 2
    assert m.value("inferwatch_cache_entries", **CACHE) == 0
    assert m.value("inferwatch_cache_puts_total", **CACHE) == 2  # nothing stored while cold

    put_faults(server, cold_cache=False)  # warm again from empty: a miss, then a hit
    for _ in range(2):
        assert post(server, AUDIO, audio("waves")) == 200
    m = until(server, lambda m: m.value(GETS, **CACHE) == 8, show=GETS)
    assert m.value(GETS, result="miss", **CACHE) == 5
    assert m.value(GETS, result="hit", **CACHE) == 3
    assert m.value("inferwatch_cache_entries", **CACHE) == 1


def test_pool_exhaustion_times_out_and_answers_503(start_demo: StartDemo) -> None:
    server = start_demo("--db-pool-size", "3", "--db-pool-timeout", "0.2")
    put_faults(server, pool_exhaustion=True)
    used = {"db_client_connection_state": "used", **DB}
    m = until(server, lambda m: m.value("db_client_connections_usage", **used) == 3)
    assert m.value("db_client_connection_max", **DB) == 3
    for _ in range(3):
        response = httpx.post(f"{server.url}{AUDIO}", json=audio(), timeout=10.0)
        assert response.status_code == 503
        assert "no connection free" in response.json()["detail"]
    assert httpx.get(f"{server.url}/v1/jobs/0123abcd").status_code == 503

    m = until(server, lambda m: http_count(m, "/v1/jobs/{job_id}", 503) == 1, show=COUNT)
    assert m.value("db_client_connection_timeouts_total", **DB) == 4
    waits = "db_client_connection_wait_time_seconds"
    assert m.bucket(waits, 0.1, **DB) == m.value(f"{waits}_count", **DB) - 4  # the 4 waited
    assert http_count(m, AUDIO, 503) == 3
    assert m.samples(REQUESTS) == []  # refused before any model work

    put_faults(server, pool_exhaustion=False)
    m = until(server, lambda m: m.value("db_client_connections_usage", **used) == 0)
    assert post(server, AUDIO, audio()) == 200
    m = until(server, lambda m: http_count(m, AUDIO, 200) == 1, show=COUNT)
    assert m.value("db_client_connection_timeouts_total", **DB) == 4


def test_memory_leak_raises_rss_until_switched_off(start_demo: StartDemo) -> None:
    server = start_demo()
    rss = "process_resident_memory_bytes"
    before = until(server, lambda m: m.value(rss) > 0).value(rss)
    put_faults(server, memory_leak_mb_per_second=400.0)
    leaked = "demo_memory_leaked_bytes"
    m = until(server, lambda m: m.value(leaked) >= 160 * MIB, show=leaked)
    assert m.value(rss) >= before + 150 * MIB
    m = until(server, lambda m: m.value(leaked) == 512 * MIB, show=leaked)  # the cap
    assert m.value(rss) <= before + 600 * MIB

    put_faults(server, memory_leak_mb_per_second=0.0)
    m = until(server, lambda m: m.value(leaked) == 0, show=leaked)
    m = until(server, lambda m: m.value(rss) < before + 64 * MIB, show=rss)


def test_jobs_are_rows_in_the_database(start_demo: StartDemo) -> None:
    server = start_demo()
    created = httpx.post(
        f"{server.url}/v1/jobs",
        json={"kind": "music", "prompt": "lofi", "duration_seconds": 4, "priority": "low"},
    )
    assert created.status_code == 202
    status_url = server.url + created.json()["status_url"]
    until(server, lambda m: m.value(COUNT, http_route="/v1/jobs") == 1)
    job = httpx.get(status_url).json()
    assert (job["status"], job["model"], job["priority"]) == ("done", "musicgen-small", "low")
    m = until(server, lambda m: m.value(REQUESTS) == 1, show=REQUESTS)
    assert m.value(REQUESTS, model="musicgen-small", outcome="success") == 1
    statements = "db_client_operation_duration_seconds_count"
    assert m.value(statements, db_operation_name="INSERT", **DB) == 1
    assert m.value(statements, db_operation_name="UPDATE", **DB) == 2  # running, then done
    assert m.value(statements, db_operation_name="SELECT", **DB) >= 1


@needs_promtool
def test_workload_scrape_passes_promtool(start_demo: StartDemo) -> None:
    server = start_demo("--max-models", "1", "--preload", "speech-small")
    put_faults(server, model_init_delay_seconds=0.01, cold_cache=True)
    assert post(server, MUSIC, audio(model="musicgen-large")) == 200
    with pytest.raises(httpx.TimeoutException):  # cancelled while speech-small reloads
        post(server, AUDIO, audio(), timeout=0.02)
    m = until(server, lambda m: m.value(REQUESTS) == 2, show=REQUESTS)
    assert promtool_problems(m.text) == []
