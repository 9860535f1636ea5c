"""The demo's ``batch_size``: one request carrying several takes that the model runs in one
batch, which the batch metrics record as that many requests (what the batch-size load
profile and the report's scalability table measure)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support import Metrics, Server, StartDemo, wait_for_metrics

AUDIO = "/v1/audio/generate"
MUSIC = "/v1/music/generate"
BATCH = {"model": "speech-small"}
REQUESTS = "inferwatch_inference_requests_total"
SAMPLE_RATE = 8000


def post(server: Server, path: str, body: dict[str, object]) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        return client.post(path, json=body)


def settled(server: Server, inferences: int) -> Metrics:
    return wait_for_metrics(
        server.url, lambda m: m.value(REQUESTS) == inferences, timeout=15.0, show=REQUESTS
    )


def test_a_request_batch_larger_than_the_limit_runs_as_one_batch(start_demo: StartDemo) -> None:
    server = start_demo("--max-batch-size", "4")
    response = post(server, AUDIO, {"prompt": "rain", "duration_seconds": 1.0, "batch_size": 8})
    assert response.status_code == 200, response.text
    assert len(response.content) == 44 + 8 * SAMPLE_RATE  # eight 1 s takes in one WAV
    m = settled(server, 1)
    assert m.value("inferwatch_batch_requests_count", **BATCH) == 1
    assert m.value("inferwatch_batch_requests_sum", **BATCH) == 8
    assert m.bucket("inferwatch_batch_requests", 4, **BATCH) == 0
    assert m.bucket("inferwatch_batch_requests", 8, **BATCH) == 1
    output = "inferwatch_inference_output_units_total"
    assert m.value(output, model="speech-small", unit="audio_seconds") == 8.0


def test_request_batches_share_a_batch_up_to_the_limit(start_demo: StartDemo) -> None:
    # A 1 s batch window (100 model seconds at time scale 0.01): the batch closes when full.
    server = start_demo("--max-batch-size", "4", "--batch-window", "100")
    body = {"prompt": "rain", "duration_seconds": 1.0, "batch_size": 2}
    with ThreadPoolExecutor(2) as pool:
        statuses = [r.status_code for r in pool.map(lambda b: post(server, AUDIO, b), [body] * 2)]
    assert statuses == [200, 200]
    m = settled(server, 2)
    assert m.value("inferwatch_batch_requests_count", **BATCH) == 1  # 2 + 2 inputs: full
    assert m.value("inferwatch_batch_requests_sum", **BATCH) == 4
    assert m.bucket("inferwatch_batch_requests", 2, **BATCH) == 0


def test_music_answers_its_batch_and_bad_sizes_are_refused(start_demo: StartDemo) -> None:
    server = start_demo()
    response = post(server, MUSIC, {"prompt": "pad", "duration_seconds": 2.0, "batch_size": 3})
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["batch_size"] == 3
    assert found["size_bytes"] == 3 * (44 + 2 * SAMPLE_RATE)
    for size in (0, 65, "many"):
        body = {"prompt": "pad", "duration_seconds": 2.0, "batch_size": size}
        assert post(server, AUDIO, body).status_code == 422, size
