"""``inferwatch demo``'s model, batching and backend options, and workers sharing SQLite."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.support import StartDemo, wait_until
from tests.support.server import inferwatch_command

WORKER = "X-Demo-Worker"


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--preload", "gpt-9"], "argument --preload: unknown model(s) gpt-9; known: "),
        (["--max-models", "0"], "argument --max-models: must be at least 1"),
        (["--max-batch-size", "x"], "argument --max-batch-size: invalid integer 'x'"),
        (["--batch-window", "-1"], "argument --batch-window: must be a finite number >= 0"),
        (["--db-pool-timeout", "0"], "argument --db-pool-timeout: must be a finite number > 0"),
        (["--redis-url", "http://:s3cret@x"], "argument --redis-url: must be a redis or rediss"),
        (["--postgres-url", "mysql://u:s3cret@x/db"], "must be a postgresql or postgres:// URL"),
        (
            ["--max-models", "1", "--preload", "speech-small,musicgen-small"],
            "cannot preload 2 models with max_loaded_models=1",
        ),
    ],
)
def test_bad_options_are_one_line_errors(args: list[str], complaint: str) -> None:
    result = subprocess.run(
        [*inferwatch_command(), "demo", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr  # a rejected URL is not echoed


def test_workers_share_the_sqlite_database(start_demo: StartDemo) -> None:
    server = start_demo("--workers", "2", "--preload", "none", "--no-access-log")
    body = {"kind": "audio", "prompt": "x", "duration_seconds": 1}
    created: dict[str, str] = {}  # worker pid -> a job it created

    def fresh(method: str, path: str, **kwargs: object) -> httpx.Response:
        # A new connection each time, so the kernel can hand it to either worker.
        with httpx.Client(base_url=server.url, timeout=10.0) as one_off:
            return one_off.request(method, path, **kwargs)  # type: ignore[arg-type]

    def both_workers_created_one() -> bool:
        response = fresh("POST", "/v1/jobs", json=body)
        assert response.status_code == 202
        created.setdefault(response.headers[WORKER], response.json()["job_id"])
        return len(created) == 2

    wait_until(both_workers_created_one, timeout=20, message=lambda: f"two workers: {created}")
    # Every job is found whichever worker answers: they read one database file.
    for _ in range(6):
        for job_id in created.values():
            assert fresh("GET", f"/v1/jobs/{job_id}").status_code == 200
