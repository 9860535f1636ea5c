"""The demo's jobs call a model service of their own (a second process the demo starts): an
outage there makes jobs partial, opens the breakers, and they close once it is over."""

from __future__ import annotations

import httpx

from tests.support import Metrics, StartDemo, scrape, wait_until

JOB = {"kind": "audio", "prompt": "a storm over the sea", "duration_seconds": 1}
CALLS = "inferwatch_upstream_calls_total"
STATE = "inferwatch_upstream_circuit_state"


def run_job(client: httpx.Client) -> dict[str, object]:
    created = client.post("/v1/jobs", json=JOB)
    assert created.status_code == 202
    url = created.json()["status_url"]
    return wait_until(
        lambda: (job := client.get(url).json())["status"] in ("done", "partial", "failed") and job,
        timeout=20,
        message="the job to end",
    )


def test_an_outage_makes_jobs_partial_opens_the_breakers_and_recovery_closes_them(
    start_demo: StartDemo,
) -> None:
    demo = start_demo("--seed", "7", "--no-access-log")
    with httpx.Client(base_url=demo.url, timeout=10) as client:
        assert run_job(client)["status"] == "done"
        client.put("/admin/faults", json={"upstream_outage": True}).raise_for_status()
        # Breakers open after 5 failures in a row: job 1 fails 3 attempts per service, job 2
        # two more, and its third attempt is refused without reaching the service.
        for _ in range(2):
            job = run_job(client)
            assert (job["status"], job["error"]) == ("partial", "partial: script, narration failed")
        m = scrape(demo.url)
        for peer in ("llm", "tts"):
            assert m.value(STATE, peer=peer, state="open") == 1
            assert m.value(CALLS, peer=peer, outcome="failed") == 2
            assert m.value(CALLS, peer=peer, outcome="success") == 1
            assert m.value("inferwatch_upstream_retries_total", peer=peer, error_type="503") == 4
            failed = {"peer": peer, "http_response_status_code": "503"}
            assert m.value("http_client_request_duration_seconds_count", **failed) == 5
        steps = "inferwatch_job_steps_total"
        assert m.value(steps, step="narration", outcome="failed") == 2
        assert m.value(steps, step="render", outcome="success") == 3
        assert m.value("inferwatch_jobs_total", kind="audio", outcome="partial") == 2

        client.put("/admin/faults", json={"upstream_outage": False}).raise_for_status()
        # Until a breaker's reset timeout has passed, its calls are refused at once.
        after: list[dict[str, object]] = []
        while not after or after[-1]["status"] != "done":
            after.append(run_job(client))
            assert len(after) < 50, after
        m = wait_until(
            lambda: (s := scrape(demo.url)).value(STATE, state="closed") == 2 and s,
            message="both breakers closed",
        )
    assert isinstance(m, Metrics)
    assert {j["status"] for j in after[:-1]} <= {"partial"}
    for peer, step in (("llm", "script"), ("tts", "narration")):
        refused = sum(step in str(j["error"]) for j in after)
        # A peer whose breaker refused nothing has no rejected series at all.
        assert m.value(CALLS, peer=peer, outcome="rejected") == (refused or None)
        assert m.value(CALLS, peer=peer, outcome="success") == 1 + len(after) - refused
        transitions = "inferwatch_upstream_circuit_transitions_total"
        assert m.value(transitions, peer=peer, state="closed") == 1
        assert m.value("inferwatch_upstream_circuit_recovery_seconds_count", peer=peer) == 1
    jobs = "inferwatch_jobs_total"
    assert m.value(jobs, kind="audio", outcome="complete") == 2
    assert m.value(jobs, kind="audio", outcome="partial") == 2 + len(after) - 1
