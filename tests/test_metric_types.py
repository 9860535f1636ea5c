"""inferwatch's metric classes against prometheus_client's exposition and parser."""

from __future__ import annotations

import math
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.metrics import Counter, Gauge, Histogram


def exposed(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }


def test_histogram_bucket_placement_is_le_inclusive() -> None:
    registry = CollectorRegistry()
    h = Histogram("job_seconds", "help", ["model"], buckets=[0.1, 1, 10], registry=registry)
    child = h.labels("musicgen")
    for value in (0.05, 0.1, 0.10001, 1, 5, 11, math.nan):
        child.observe(value)
    got = exposed(registry)

    def bucket(le: str) -> float:
        return got[("job_seconds_bucket", (("le", le), ("model", "musicgen")))]

    assert [bucket(le) for le in ("0.1", "1.0", "10.0", "+Inf")] == [2, 4, 5, 6]
    assert got[("job_seconds_count", (("model", "musicgen"),))] == 6
    assert got[("job_seconds_sum", (("model", "musicgen"),))] == pytest.approx(17.25001)


def test_counter_and_gauge() -> None:
    registry = CollectorRegistry()
    c = Counter("jobs_total", "help", ["outcome"], registry=registry)
    g = Gauge("queue_depth", "help", registry=registry)
    c.labels("success").inc()
    c.labels("success").inc(2.5)
    g.labels().inc(3)
    g.labels().dec()
    with pytest.raises(ValueError, match="only go up"):
        c.labels("success").inc(-1)
    got = exposed(registry)
    assert got[("jobs_total", (("outcome", "success"),))] == 3.5
    assert got[("queue_depth", ())] == 2
    c.remove("success")
    assert ("jobs_total", (("outcome", "success"),)) not in exposed(registry)


def test_concurrent_increments_are_exact() -> None:
    registry = CollectorRegistry()
    h = Histogram("t_seconds", "help", buckets=[1], registry=registry)
    child = h.labels()

    def work() -> None:
        for _ in range(20_000):
            child.observe(0.5)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = exposed(registry)
    assert got[("t_seconds_count", ())] == 80_000
    assert got[("t_seconds_sum", ())] == 40_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad-name"}, "invalid metric name"),
        ({"labelnames": ["ok", "bad-label"]}, "invalid label name"),
        ({"labelnames": ["le"]}, "reserved"),
        ({"labelnames": ["a", "a"]}, "duplicate label"),
        ({"buckets": [2, 1]}, "strictly increasing"),
        ({"buckets": []}, "must not be empty"),
        ({"buckets": ["x"]}, "must be numbers"),
        ({"documentation": ""}, "help text"),
    ],
)
def test_bad_definitions_are_rejected_clearly(kwargs: dict, message: str) -> None:
    args = {"name": "x_seconds", "documentation": "help", "labelnames": [], "buckets": [1]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Histogram(
            args["name"], args["documentation"], args["labelnames"],
            buckets=args["buckets"], registry=None,
        )  # fmt: skip


def test_wrong_number_of_label_values() -> None:
    c = Counter("x_total", "help", ["a", "b"], registry=None)
    with pytest.raises(ValueError, match="expects 2 label values"):
        c.labels("only-one")
