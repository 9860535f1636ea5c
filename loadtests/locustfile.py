"""Load scenarios for the demo service; docker-compose runs this file under the `load` profile:

    docker-compose --profile load up -d

Headless, as in CI (tags pick components: generate, batch, jobs, websocket, cache):

    locust -f loadtests/locustfile.py --headless -u 10 -r 5 -t 1m --host http://127.0.0.1:8000 \
        --csv out/load --tags generate jobs websocket

Stepped ramp (1, 5, 10, 20, 50 users by default; see loadtests/ramp.py):

    locust -f loadtests/locustfile.py,loadtests/ramp.py --headless --host http://127.0.0.1:8000

Every request is named after the demo's route template (``/v1/jobs/{job_id}``), so locust's
per-name statistics line up one-to-one with ``http_route`` in Prometheus.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import gevent
from locust import HttpUser, User, between, events, tag, task

PROMPTS = ("rain on a tin roof", "a slow piano in a large hall", "city traffic at night")
CACHED_PROMPTS = ("the same warm pad", "a repeated drum loop")  # few, so the cache warms up
BATCH_SIZE = int(os.environ.get("INFERWATCH_LOAD_BATCH_SIZE", "4"))
JOB_POLLS = int(os.environ.get("INFERWATCH_LOAD_JOB_POLLS", "10"))
WS_TIMEOUT = 10.0

AUDIO = "/v1/audio/generate"
MUSIC = "/v1/music/generate"
STREAM = "/v1/audio/stream"
JOBS = "/v1/jobs"
JOB = "/v1/jobs/{job_id}"
JOB_RESULT = "/v1/jobs/{job_id}/result"
WEBSOCKET = "/v1/ws/generate"


class GenerationUser(HttpUser):
    """Synchronous generations: the latency the dashboards' request panels show."""

    weight = 3
    wait_time = between(0.5, 2.0)

    @tag("generate")
    @task(3)
    def audio(self) -> None:
        body = {"prompt": random.choice(PROMPTS), "duration_seconds": random.uniform(1, 5)}
        self.client.post(AUDIO, json=body, name=AUDIO)

    @tag("generate")
    @task(1)
    def music(self) -> None:
        body = {"prompt": random.choice(PROMPTS), "duration_seconds": random.uniform(5, 20)}
        self.client.post(MUSIC, json=body, name=MUSIC)

    @tag("generate", "stream")
    @task(1)
    def stream(self) -> None:
        params = {"prompt": random.choice(PROMPTS), "chunks": 4}
        self.client.get(STREAM, params=params, name=STREAM)


class BatchUser(HttpUser):
    """Bursts of concurrent generations, which the demo's scheduler groups into batches."""

    weight = 1
    wait_time = between(1.0, 3.0)

    @tag("batch")
    @task
    def burst(self) -> None:
        def one() -> None:
            body = {"prompt": random.choice(PROMPTS), "duration_seconds": random.uniform(1, 3)}
            self.client.post(AUDIO, json=body, name=AUDIO)

        gevent.joinall([gevent.spawn(one) for _ in range(BATCH_SIZE)])


class JobUser(HttpUser):
    """Background jobs: submit, poll the status until done, then download the result."""

    weight = 1
    wait_time = between(1.0, 3.0)

    @tag("jobs")
    @task
    def job(self) -> None:
        body = {
            "kind": random.choice(("audio", "music", "video")),
            "prompt": random.choice(PROMPTS),
            "duration_seconds": random.uniform(2, 10),
        }
        with self.client.post(JOBS, json=body, name=JOBS, catch_response=True) as response:
            if response.status_code != 202:
                response.failure(f"job not accepted: {response.status_code}")
                return
            status_url = response.json()["status_url"]
        for _ in range(JOB_POLLS):
            status = self.client.get(status_url, name=JOB)
            if status.status_code != 200 or status.json().get("status") in ("done", "failed"):
                break
            time.sleep(0.2)  # gevent-patched: yields to the other users
        if status.status_code == 200 and status.json().get("status") == "done":
            self.client.get(f"{status_url}/result", name=JOB_RESULT)


class CacheReaderUser(HttpUser):
    """Repeats a handful of prompts: a cache-heavy workload whose hit ratio should be high."""

    weight = 1
    wait_time = between(0.2, 1.0)

    @tag("cache")
    @task
    def repeated(self) -> None:
        body = {"prompt": random.choice(CACHED_PROMPTS), "duration_seconds": 1.0}
        self.client.post(AUDIO, json=body, name=AUDIO)


class WebSocketUser(User):
    """A streaming session over ``/v1/ws/generate``. Locust has no WebSocket client, so each
    session is timed here and reported through ``request`` events, which locust counts like
    HTTP requests (type ``WS``)."""

    weight = 1
    wait_time = between(0.5, 2.0)

    @tag("websocket")
    @task
    def session(self) -> None:
        from websockets.sync.client import connect

        url = self.host.replace("http", "ws", 1).rstrip("/") + f"{WEBSOCKET}?token=load"
        started = time.perf_counter()
        size, error = 0, None
        try:
            with connect(url, open_timeout=WS_TIMEOUT, close_timeout=WS_TIMEOUT) as ws:
                ws.send(json.dumps({"prompt": random.choice(PROMPTS), "chunks": 4}))
                while True:
                    message = ws.recv(timeout=WS_TIMEOUT)
                    if isinstance(message, bytes):
                        size += len(message)
                        continue
                    if json.loads(message).get("type") == "done":
                        break
                    raise RuntimeError(f"unexpected message: {message[:200]}")
        except Exception as exc:  # a refused or broken session is a failed request
            error = exc
        self.environment.events.request.fire(
            request_type="WS",
            name=WEBSOCKET,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=size,
            exception=error,
            context={},
        )


@events.init.add_listener
def _drop_untagged_users(environment: Any, **_: Any) -> None:
    """With ``--tags``, locust filters tasks but keeps user classes left without any, which
    then fail; drop those classes so a tag selects whole components."""
    options = environment.parsed_options
    wanted = set(getattr(options, "tags", None) or [])
    if not wanted:
        return
    kept = [
        user
        for user in environment.user_classes
        if any(wanted & getattr(t, "locust_tag_set", set()) for t in user.tasks)
    ]
    if kept:
        environment.user_classes[:] = kept
