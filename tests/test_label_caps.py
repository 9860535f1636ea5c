"""Label caps that hold across the workers of a service and across their restarts.

The bounds are :class:`inferwatch.metrics.labels.BoundedLabel`. In one process they are
plain in-memory caps; in multiprocess mode their admitted values live in the shared
directory. The tests run real processes: interpreters started with
``PROMETHEUS_MULTIPROC_DIR`` that race for the last places of a cap, and ``uvicorn --workers
4`` whose workers are all SIGKILLed ten times over while clients send new model names and
new exception types.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from prometheus_client.registry import CollectorRegistry

from inferwatch.ai import OTHER as AI_OTHER
from inferwatch.ai.labels import BoundedLabel as AIBoundedLabel
from inferwatch.ai.models import DEFAULT_MAX_MODELS
from inferwatch.alertsink.metrics import SinkMetrics
from inferwatch.exporters.postgres import OTHER as POSTGRES_OTHER
from inferwatch.http.middleware import MAX_ERROR_TYPES
from inferwatch.http.middleware import OTHER as HTTP_OTHER
from inferwatch.metrics.labels import OTHER, BoundedLabel, error_types, shared_file
from inferwatch.metrics.multiprocess import compact
from inferwatch.pools.names import RedisCommandNames
from tests.support import Metrics, wait_until
from tests.support.multiworker import Workers, multiworker

REQUESTS = "inferwatch_inference_requests_total"
EXCEPTIONS = "http_server_exceptions_total"


# -- one process -----------------------------------------------------------------------------
def test_single_process_cap_keeps_the_first_values_and_folds_the_rest() -> None:
    bound = BoundedLabel("model", name="test.model", max_values=3)
    assert [bound(v) for v in ["a", "b", "a", "c", "d", "b", "e"]] == [
        "a", "b", "a", "c", "_OTHER", "b", "_OTHER",
    ]  # fmt: skip
    # In one process a bound is its own: another of the same name starts empty.
    other = BoundedLabel("model", name="test.model", max_values=1)
    assert [other("d"), other("a")] == ["d", "_OTHER"]


def test_every_cap_folds_into_the_one_overflow_value() -> None:
    """HTTP, AI, pools, the alert sink and the exporter spell "another value" alike, so one
    matcher finds what was folded on any metric."""
    names = RedisCommandNames(extra=2)
    assert [names(c) for c in ["GET", "JSON.GET", "FT.SEARCH", "TS.ADD", "get"]] == [
        "GET", "JSON.GET", "FT.SEARCH", "_OTHER", "GET",
    ]  # fmt: skip
    assert (OTHER, HTTP_OTHER, AI_OTHER, POSTGRES_OTHER) == ("_OTHER",) * 4
    model = AIBoundedLabel("model", max_values=1)
    errors = error_types(None, "test", max_values=1)
    receiver = SinkMetrics.create(CollectorRegistry(), max_receivers=1).receiver
    assert [(b("a"), b("b")) for b in (model, errors, receiver)] == [("a", "_OTHER")] * 3


# -- processes sharing a directory -----------------------------------------------------------
ADMIT = """
import json, sys
from inferwatch.metrics.labels import BoundedLabel

cap, bounds, values = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
named = [f"test.model{k}" for k in range(bounds)]
bound = [BoundedLabel("model", name=n, max_values=cap) for n in named]
print("ready", flush=True)
sys.stdin.readline()  # start together
# Value by value through every bound: all of them reach their caps at about the same time.
result = [{} for _ in bound]
for v in values:
    for k, b in enumerate(bound):
        result[k][v] = b(v)
print(json.dumps(result))
"""


def admit_in_processes(
    directory: Path, cap: int, value_lists: list[list[str]], bounds: int = 1
) -> list[list[dict[str, str]]]:
    """Run one interpreter per list, all at once, each mapping its values through
    ``bounds`` bounds named ``test.model0``, ``test.model1``...; return what each process
    mapped each value to, per bound: ``result[process][bound][value]``."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    command = [sys.executable, "-c", ADMIT, str(cap), str(bounds)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen([*command, *values], env=env, **pipes) for values in value_lists]
    for proc in procs:  # all imported and waiting...
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:  # ...then all at once
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(procs)
    return [json.loads(out) for out in outputs]


def test_processes_racing_for_caps_admit_exactly_cap_values_and_agree(tmp_path: Path) -> None:
    cap, bounds = 10, 50
    # Six "workers", 40 values each, half of them shared with the next one; fifty bounds,
    # so that fifty races for the last place happen at once.
    lists = [[f"m{(w * 20 + i) % 120}" for i in range(40)] for w in range(6)]
    results = admit_in_processes(tmp_path, cap, lists, bounds)
    for k in range(bounds):
        per_process = [result[k] for result in results]
        admitted = {v for mapped in per_process for v, label in mapped.items() if label == v}
        assert len(admitted) == cap, f"bound {k}"
        for mapped in per_process:
            # A value is admitted everywhere or nowhere; everything else is folded.
            assert all(label == (v if v in admitted else "_OTHER") for v, label in mapped.items())
        path = Path(shared_file(str(tmp_path), f"test.model{k}"))
        assert sorted(json.loads(line) for line in path.read_text().splitlines()) == sorted(
            admitted
        )

    # A worker started later (a restart) gets the same values and no new ones.
    admitted = {v for v, label in results[0][0].items() if label == v}
    (later,) = admit_in_processes(tmp_path, cap, [["brand-new", *sorted(admitted)]])
    assert later[0] == {"brand-new": "_OTHER", **{v: v for v in admitted}}


def test_a_torn_line_left_by_a_killed_writer_costs_nothing(tmp_path: Path) -> None:
    path = Path(shared_file(str(tmp_path), "test.model0"))
    path.write_bytes(b'"kept"\n"half-writ')  # a writer killed in the middle of its line
    ((first,),) = admit_in_processes(tmp_path, 3, [["kept", "x", "y", "z"]])
    assert first == {"kept": "kept", "x": "x", "y": "y", "z": "_OTHER"}
    ((second,),) = admit_in_processes(tmp_path, 3, [["z", "y", "x"]])
    assert second == {"z": "_OTHER", "y": "y", "x": "x"}


def test_compaction_keeps_the_admitted_values(tmp_path: Path) -> None:
    admit_in_processes(tmp_path, 2, [["a", "b", "c"]])
    path = Path(shared_file(str(tmp_path), "test.model0"))
    before = path.read_text()
    assert before.splitlines() == ['"a"', '"b"']
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"counter_{dead.pid}.db").write_bytes(b"")  # a worker that died at once
    # That file, and the counter file the admitting process left, are folded and removed.
    assert compact(str(tmp_path)) == 2
    assert [p.name for p in tmp_path.glob("*.db")] == ["counter_archive.db"]
    assert path.read_text() == before


# -- uvicorn --workers 4, all workers killed after each round --------------------------------
WORKERS = 4
ROUNDS = 10
MODELS_PER_ROUND = 400
ERRORS_PER_ROUND = 100


def wait_recorded(srv: Workers, requests: int, exceptions: int) -> Metrics:
    """Scrape until the workers have recorded exactly this many requests and exceptions."""
    last: list[Metrics] = []

    def recorded() -> Metrics | None:
        metrics = srv.scrape()
        last[:] = [metrics]
        done = (metrics.value(REQUESTS), metrics.value(EXCEPTIONS)) == (requests, exceptions)
        return metrics if done else None

    def message() -> str:
        seen = (last[0].value(REQUESTS), last[0].value(EXCEPTIONS)) if last else None
        return f"{requests} inference requests and {exceptions} exceptions (seen {seen})"

    return wait_until(recorded, 30.0, interval=0.05, message=message)


def series_count(metrics: Metrics) -> int:
    return sum(len(family.samples) for family in metrics.families)


def test_caps_hold_across_workers_and_restarts(tmp_path: Path) -> None:
    assert DEFAULT_MAX_MODELS == MAX_ERROR_TYPES == 50
    counts = []
    with multiworker(tmp_path, workers=WORKERS) as srv:
        for r in range(1, ROUNDS + 1):
            models = [f"/infer/{uuid.uuid4().hex}" for _ in range(MODELS_PER_ROUND)]
            srv.send(models)
            srv.send([f"/raise/Churn{r}x{i}" for i in range(ERRORS_PER_ROUND)], status=500)
            # Everything recorded before the kill: a SIGKILL loses what is not yet written.
            wait_recorded(srv, r * MODELS_PER_ROUND, r * ERRORS_PER_ROUND)
            killed = srv.kill_all()
            assert srv.wait_all_serving().isdisjoint(killed)
            # The first scrape after the restart folds the dead workers into the archives.
            metrics = wait_recorded(srv, r * MODELS_PER_ROUND, r * ERRORS_PER_ROUND)
            counts.append(series_count(metrics))

        models = metrics.label_values(REQUESTS, "model")
        assert len(models) == DEFAULT_MAX_MODELS + 1 and AI_OTHER in models
        # Every AI metric folds the same values: the bound is one per label.
        histogram = "inferwatch_inference_request_duration_seconds_count"
        assert metrics.label_values(histogram, "model") == models
        error_types = metrics.label_values(EXCEPTIONS, "error_type")
        assert len(error_types) == MAX_ERROR_TYPES + 1 and HTTP_OTHER in error_types
        # The first round's values won; no later round got any place.
        first_round = "tests.apps.multiworker_app.Churn1x"
        assert all(t.startswith(first_round) for t in error_types - {HTTP_OTHER})
        assert counts == [counts[0]] * ROUNDS, counts
        for name in ("ai.model", "http.error_type"):
            lines = Path(shared_file(str(srv.multiproc_dir), name)).read_text().splitlines()
            assert len(lines) == 50, name
