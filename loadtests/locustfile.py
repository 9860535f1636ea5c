"""A minimal load for the demo service; docker-compose runs it under the `load` profile:

    docker-compose --profile load up -d

Two kinds of client: one asking for short generations and waiting for them, one submitting
background jobs and polling them. Kept small on purpose; richer scenarios come later.
"""

from __future__ import annotations

import random

from locust import HttpUser, between, task

PROMPTS = ("rain on a tin roof", "a slow piano in a large hall", "city traffic at night")


class GenerationUser(HttpUser):
    """Synchronous generations: the latency the dashboards' request panels show."""

    weight = 3
    wait_time = between(0.5, 2.0)

    @task(3)
    def audio(self) -> None:
        body = {"prompt": random.choice(PROMPTS), "duration_seconds": random.uniform(1, 5)}
        self.client.post("/v1/audio/generate", json=body, name="/v1/audio/generate")

    @task(1)
    def music(self) -> None:
        body = {"prompt": random.choice(PROMPTS), "duration_seconds": random.uniform(5, 20)}
        self.client.post("/v1/music/generate", json=body, name="/v1/music/generate")

    @task(1)
    def stream(self) -> None:
        params = {"prompt": random.choice(PROMPTS), "chunks": 4}
        self.client.get("/v1/audio/stream", params=params, name="/v1/audio/stream")


class JobUser(HttpUser):
    """Background jobs: queueing, job counts and their outcomes."""

    weight = 1
    wait_time = between(2.0, 5.0)

    @task
    def job(self) -> None:
        body = {
            "kind": random.choice(("audio", "music", "video")),
            "prompt": random.choice(PROMPTS),
            "duration_seconds": random.uniform(2, 10),
        }
        with self.client.post("/v1/jobs", json=body, catch_response=True) as response:
            if response.status_code != 202:
                response.failure(f"job not accepted: {response.status_code}")
                return
            status_url = response.json()["status_url"]
        self.client.get(status_url, name="/v1/jobs/{job_id}")
