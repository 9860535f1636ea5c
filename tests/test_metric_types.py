"""inferwatch's metric classes against prometheus_client's exposition and parser."""

from __future__ import annotations

import enum
import math
import sys
import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.metrics import Counter, Gauge, Histogram, counter, gauge, histogram
from inferwatch.metrics._base import label_value
from tests.support.threads import run_together, switching_inside


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
    """The child's lock keeps ``+=`` whole: traced opcode by opcode, a thread may switch
    between reading the count and storing it back, and without the lock observations are
    lost (the GIL alone switches at no point inside ``+=`` on CPython 3.10+)."""
    registry = CollectorRegistry()
    h = Histogram("t_seconds", "help", buckets=[1], registry=registry)
    child = h.labels()

    def work() -> None:
        for _ in range(20_000):
            child.observe(0.5)

    with switching_inside(histogram):
        run_together(work, threads=4)
    got = exposed(registry)
    assert got[("t_seconds_count", ())] == 80_000
    assert got[("t_seconds_sum", ())] == 40_000


def test_concurrent_counter_and_gauge_writes_are_exact() -> None:
    """As for the histogram: each child's lock, not the GIL, keeps its ``+=`` whole. One
    metric at a time, so that the threads meet in that metric's writes only."""
    registry = CollectorRegistry()
    jobs = Counter("jobs", "help", registry=registry).labels()
    running = Gauge("running", "help", registry=registry).labels()

    def count() -> None:
        for _ in range(20_000):
            jobs.inc()

    def move() -> None:
        for _ in range(10_000):
            running.inc(2)
            running.dec()

    with switching_inside(counter, gauge):
        run_together(count, threads=4)
        run_together(move, threads=4)
    got = exposed(registry)
    assert got[("jobs_total", ())] == 80_000
    assert got[("running", ())] == 40_000


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


# -- many threads at once --------------------------------------------------------------------
@pytest.fixture
def switch_often() -> Iterator[None]:
    """Make the interpreter switch threads every microsecond, so that any unguarded
    check-then-act in the metric classes meets another thread in the middle."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


THREADS = 16
KEYS = 3000  # new children that all threads race to create at once
PASSES = 2


def test_threads_creating_and_writing_the_same_children_count_exactly(switch_often: None) -> None:
    """All threads race to create each child: the check-then-create in ``labels()`` is what
    a missing lock would break (two children for one key, the increments of one lost).
    A child's own ``+=`` has no thread switch in it on CPython 3.11, lock or not."""
    registry = CollectorRegistry()
    jobs = Counter("jobs", "help", ["key"], registry=registry)
    running = Gauge("running", "help", ["key"], registry=registry)
    latency = Histogram("latency_seconds", "help", ["key"], buckets=[1], registry=registry)
    start = threading.Barrier(THREADS)

    def work() -> None:
        start.wait()
        for _ in range(PASSES):
            for k in range(KEYS):
                key = f"k{k}"
                jobs.labels(key).inc()
                running.labels(key).inc()
                latency.labels(key).observe(0.5)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = exposed(registry)
    each = THREADS * PASSES
    for k in range(KEYS):
        labels = (("key", f"k{k}"),)
        assert got[("jobs_total", labels)] == each
        assert got[("running", labels)] == each
        assert got[("latency_seconds_count", labels)] == each
        assert got[("latency_seconds_sum", labels)] == each / 2
    assert len(jobs._children) == len(latency._children) == KEYS


# -- label values ----------------------------------------------------------------------------
class Voice(str, enum.Enum):  # the pre-3.11 spelling of a string enum: str() is "Voice.ALLOY"
    ALLOY = "alloy"


class Model(enum.StrEnum):
    BARK = "bark"


class Name(str):
    def __str__(self) -> str:
        return "not the characters"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("alloy", "alloy"),
        (Voice.ALLOY, "alloy"),
        (Model.BARK, "bark"),
        (Name("nova"), "nova"),
        (200, "200"),
        (1, "1"),
        (True, "True"),
        (1.0, "1.0"),
        (None, "None"),
    ],
)
@pytest.mark.parametrize("first", ["text", "value"])
def test_the_fast_path_gives_the_child_the_slow_path_gives(
    value: object, text: str, first: str
) -> None:
    c = Counter("x_total", "help", ["v"], registry=None)
    # Created under either spelling, found under the other by the one dict lookup, and the
    # conversion (the slow path) agrees: one child, keyed by the label text.
    child = c.labels(text if first == "text" else value)
    assert c.labels(value if first == "text" else text) is child
    assert c._labels_slow((value,)) is child
    assert label_value(value) == text
    assert list(c._children) == [(text,)]
    assert all(type(v) is str for key in c._children for v in key)


def test_numbers_bools_and_strings_keep_their_own_children() -> None:
    c = Counter("x_total", "help", ["v"], registry=None)
    # 1 == True and hash(1) == hash(True): only the label text may decide.
    children = [c.labels(v) for v in (1, True, "1", "True", 1.0)]
    assert children[0] is children[2]
    assert children[1] is children[3]
    assert children[4] is not children[0]
    assert sorted(c._children) == [("1",), ("1.0",), ("True",)]


def test_unhashable_values_are_labelled_by_their_text() -> None:
    c = Counter("x_total", "help", ["v"], registry=None)
    assert c.labels(["a"]) is c.labels("['a']")
