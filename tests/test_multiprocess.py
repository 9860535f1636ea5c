"""Multiprocess mode: exact totals across real uvicorn workers, and clean-up after dead ones.

The server tests run ``uvicorn --workers 2`` on ``tests/apps/multiworker_app.py`` with a
fresh ``PROMETHEUS_MULTIPROC_DIR`` (tests/support/multiworker.py), talk to it over real TCP
connections, SIGKILL its workers, and read /metrics the way Prometheus would. The unit tests
build the mmap files of dead workers (written by real prometheus_client code in processes
that then exit) and check what ``compact()`` makes of them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.metrics import multiprocess
from inferwatch.metrics.multiprocess import CompactingCollector, compact
from inferwatch.metrics.reader import DirectoryReader
from tests.support import value, wait_until
from tests.support.multiworker import Workers, exited, multiworker

FAST_BODY_LEN = 2
DURATION = "http_server_request_duration_seconds"
ACTIVE = "http_server_active_requests"
FAST = {"http_request_method": "GET", "http_route": "/fast", "http_response_status_code": "200"}
FAST_DURATION = {**FAST, "error_type": ""}  # the duration's error_type: empty for successes
TIMEOUT = 20.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def buckets(samples: Samples, name: str, labels: dict[str, str]) -> list[tuple[float, float]]:
    """The (le, cumulative count) pairs of the histogram series with ``labels``, in order."""
    found = []
    for (sample, sample_labels), count in samples.items():
        rest = dict(sample_labels)
        le = rest.pop("le", None)
        if sample == name + "_bucket" and labels.items() <= rest.items() and le is not None:
            found.append((float(le), count))
    return sorted(found)


# -- a real multi-worker server --------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path) -> Iterator[Workers]:
    with multiworker(tmp_path, workers=2) as srv:
        yield srv


def hold_request(srv: Workers) -> tuple[int, threading.Thread]:
    """Start a /slow request that stays in flight; return the pid of the worker serving it."""
    token = uuid.uuid4().hex
    thread = threading.Thread(
        target=_get_ignoring_errors, args=(srv, f"/slow/{token}"), daemon=True
    )
    thread.start()
    started = srv.control_dir / f"started-{token}"
    wait_until(started.exists, TIMEOUT, message="the slow request to reach a worker")
    return int(started.read_text()), thread


def _get_ignoring_errors(srv: Workers, path: str) -> None:
    # The worker serving it gets killed: the connection just drops.
    with contextlib.suppress(OSError, http.client.HTTPException):
        srv.get(path)


def assert_fast_totals(samples: Samples, n: int) -> None:
    """Every /fast request counted exactly once, in every histogram that records it."""
    assert value(samples, DURATION + "_count", **FAST_DURATION) == n
    series = buckets(samples, DURATION, FAST_DURATION)
    assert series[-1] == (math.inf, n)
    counts = [count for _, count in series]
    assert counts == sorted(counts), "cumulative buckets must not decrease"
    per_bucket = [b - a for a, b in zip([0.0, *counts], counts, strict=False)]
    assert sum(per_bucket) == n
    # The body sizes are exact integers, so their sums must be exact too.
    response = "http_server_response_body_size_bytes"
    assert value(samples, response + "_count", **FAST) == n
    assert value(samples, response + "_sum", **FAST) == n * FAST_BODY_LEN
    assert value(samples, "http_server_request_body_size_bytes_sum", **FAST) == 0


def settled(srv: Workers, n: int) -> Samples:
    """Scrape once the workers have recorded ``n`` /fast requests. A worker records a request
    just after sending its last byte, so the client can be a moment ahead of the metrics."""

    def recorded() -> Samples | None:
        samples = srv.samples()
        done = value(samples, DURATION + "_count", **FAST_DURATION) == n
        return samples if done and value(samples, ACTIVE, http_request_method="GET") == 0 else None

    samples = wait_until(recorded, TIMEOUT, message=f"{n} recorded /fast requests")
    assert_fast_totals(samples, n)
    return samples


def test_counts_sum_exactly_across_workers(server: Workers) -> None:
    n = 200
    served = server.send("/fast", n)
    assert sum(served.values()) == n
    assert len(served) >= 2, f"all requests went to one worker: {served}"
    settled(server, n)
    # Whichever worker answers a scrape reads the same shared totals, and they stay put.
    for _ in range(6):
        assert_fast_totals(server.samples(), n)


def test_killed_workers_in_flight_gauge_disappears(server: Workers) -> None:
    n = 60
    server.send("/fast", n)
    settled(server, n)
    victim, client = hold_request(server)
    assert victim in server.workers()
    before = server.samples()
    assert value(before, ACTIVE, http_request_method="GET") == 1
    assert_fast_totals(before, n)

    os.kill(victim, signal.SIGKILL)
    client.join(timeout=10)

    def cleaned_up() -> Samples | None:
        samples = server.samples()
        gone = not any(name.endswith(f"_{victim}.db") for name in server.db_files())
        active = value(samples, ACTIVE, http_request_method="GET") or 0.0
        return samples if gone and active == 0 else None

    after = wait_until(
        cleaned_up, TIMEOUT, message=f"worker {victim}'s in-flight gauge and files to go"
    )
    assert_fast_totals(after, n)  # what the dead worker served is still counted, once
    assert (
        value(after, DURATION + "_count", **{**FAST_DURATION, "http_route": "/slow/{token}"})
        is None
    )

    # The supervisor's replacement serves, and totals keep adding up exactly.
    live = server.wait_all_serving()
    assert victim not in live
    server.send("/fast", n)
    settled(server, 2 * n)


def test_worker_churn_keeps_directory_bounded_and_totals_exact(server: Workers) -> None:
    total = 0
    kills = 5
    for _ in range(kills):
        served = server.send("/fast", 20)
        total += 20
        settled(server, total)  # killing a worker before it records would lose requests
        victim = max(served, key=lambda pid: served[pid])  # surely has files to fold
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda v=victim: exited(v), TIMEOUT, message=f"worker {victim} to die")
        assert_fast_totals(server.samples(), total)  # this scrape folds the victim's files
        files = server.db_files()
        assert not [f for f in files if f.endswith(f"_{victim}.db")], files
        live = server.wait_all_serving()
        assert victim not in live

    server.send("/fast", 20)
    total += 20
    settled(server, total)
    files = server.db_files()
    live = server.workers()
    kinds = {f.rsplit("_", 1)[0] for f in files}
    archives = [f for f in files if f.endswith(f"_{multiprocess.ARCHIVE}.db")]
    per_worker = [f for f in files if f not in archives]
    # One file per live worker and kind plus one archive per kind, however many have died.
    assert {int(f.rsplit("_", 1)[1][: -len(".db")]) for f in per_worker} <= live, files
    assert len(files) <= len(live) * len(kinds) + len(kinds), files
    assert "histogram_archive.db" in archives


# -- compact() on the files of dead processes ------------------------------------------------
WRITER = """
import sys
import prometheus_client as pc

n = int(sys.argv[1])
jobs = pc.Counter("jobs", "Jobs.", ["model"], registry=None)
latency = pc.Histogram("latency_seconds", "L.", ["model"], buckets=(0.5, 1.0), registry=None)
inflight = pc.Gauge("inflight", "I.", ["model"], multiprocess_mode="livesum", registry=None)
peak = pc.Gauge("peak", "P.", multiprocess_mode="max", registry=None)
low = pc.Gauge("low", "L.", multiprocess_mode="min", registry=None)
queued = pc.Gauge("queued", "Q.", multiprocess_mode="sum", registry=None)
temp = pc.Gauge("temp", "T.", multiprocess_mode="all", registry=None)
version = pc.Gauge("version", "V.", multiprocess_mode="mostrecent", registry=None)
jobs.labels("a").inc(n)
jobs.labels("b").inc(0.5)
for i in range(n):
    latency.labels("a").observe(i * 0.5)  # binary fractions: float sums stay exact
inflight.labels("a").inc(n)
for gauge in (peak, low, queued, temp, version):
    gauge.set(n)
"""


def run_writer(directory: Path, n: int) -> None:
    """Write metrics from a real prometheus_client process that then exits."""
    subprocess.run(
        [sys.executable, "-c", WRITER, str(n)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        check=True,
    )


def writer_pids(directory: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[1] for p in directory.glob("*.db")} - {multiprocess.ARCHIVE}


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped, so the pid is free
    return proc.pid


def merged(paths: list[Path]) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for metric in MultiProcessCollector.merge([str(p) for p in paths])
        for s in metric.samples
    }


def kept(directory: Path) -> list[Path]:
    """What prometheus_client would still report for dead workers: all but live/all gauges."""
    return [
        p for p in directory.glob("*.db") if not p.name.startswith(("gauge_live", "gauge_all_"))
    ]


@pytest.fixture
def dead_workers(tmp_path: Path) -> Path:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    for n in (1, 2, 3):
        run_writer(directory, n)
    assert len(writer_pids(directory)) == 3
    return directory


def test_compact_preserves_totals_and_drops_live_gauges(dead_workers: Path) -> None:
    expected = merged(kept(dead_workers))
    removed = compact(str(dead_workers))
    assert removed == 3 * 8  # each writer left a counter, a histogram and six gauge files
    files = sorted(p.name for p in dead_workers.glob("*.db"))
    assert files == [
        "counter_archive.db",
        "gauge_max_archive.db",
        "gauge_min_archive.db",
        "gauge_mostrecent_archive.db",
        "gauge_sum_archive.db",
        "histogram_archive.db",
    ]
    after = merged(list(dead_workers.glob("*.db")))
    assert after == expected
    # And by hand, against what the three writers (n = 1, 2, 3) did:
    assert value(after, "jobs_total", model="a") == 6
    assert value(after, "jobs_total", model="b") == 1.5
    assert value(after, "latency_seconds_count", model="a") == 6
    assert value(after, "latency_seconds_sum", model="a") == 0.5 * (0 + 0 + 1 + 0 + 1 + 2)
    assert value(after, "latency_seconds_bucket", model="a", le="0.5") == 5
    assert value(after, "latency_seconds_bucket", model="a", le="1.0") == 6
    assert value(after, "peak") == 3
    assert value(after, "low") == 1
    assert value(after, "queued") == 6
    assert value(after, "version") == 3  # the last writer set it last
    assert not [key for key in after if key[0] in ("inflight", "temp")]


def test_compact_is_idempotent_and_accumulates_over_generations(dead_workers: Path) -> None:
    compact(str(dead_workers))
    first = merged(list(dead_workers.glob("*.db")))
    assert compact(str(dead_workers)) == 0
    assert merged(list(dead_workers.glob("*.db"))) == first
    # A later generation of dead workers folds into the same archives.
    run_writer(dead_workers, 4)
    assert compact(str(dead_workers)) == 8
    after = merged(list(dead_workers.glob("*.db")))
    assert value(after, "jobs_total", model="a") == 10
    assert value(after, "latency_seconds_count", model="a") == 10
    assert value(after, "peak") == 4
    assert value(after, "low") == 1
    assert value(after, "version") == 4
    assert writer_pids(dead_workers) == set()


def write_db(path: Path, entries: list[tuple[str, float, float]]) -> None:
    db = MmapedDict(str(path))
    try:
        for name, val, timestamp in entries:
            db.write_value(mmap_key(name, name, [], [], "Doc."), val, timestamp)
    finally:
        db.close()


def test_compact_combines_gauge_modes_by_value_and_timestamp(tmp_path: Path) -> None:
    # The file compacted last holds the older mostrecent value: order must not matter.
    first, second = sorted((dead_pid(), dead_pid()), key=str)
    write_db(tmp_path / f"gauge_mostrecent_{first}.db", [("v", 7.0, 200.0)])
    write_db(tmp_path / f"gauge_mostrecent_{second}.db", [("v", 9.0, 100.0)])
    for pid, val in ((first, -2.0), (second, 5.0)):
        write_db(tmp_path / f"gauge_max_{pid}.db", [("hi", val, 0.0)])
        write_db(tmp_path / f"gauge_min_{pid}.db", [("lo", val, 0.0)])
        write_db(tmp_path / f"gauge_livemax_{pid}.db", [("gone", val, 0.0)])
    assert compact(str(tmp_path)) == 8
    after = merged(list(tmp_path.glob("*.db")))
    assert value(after, "v") == 7.0
    assert value(after, "hi") == 5.0
    assert value(after, "lo") == -2.0
    assert value(after, "gone") is None


def test_compact_leaves_live_processes_alone(tmp_path: Path) -> None:
    me = os.getpid()
    write_db(tmp_path / f"counter_{me}.db", [("c", 3.0, 0.0)])
    write_db(tmp_path / f"gauge_livesum_{me}.db", [("g", 1.0, 0.0)])
    write_db(tmp_path / f"counter_{dead_pid()}.db", [("c", 4.0, 0.0)])
    assert compact(str(tmp_path)) == 1
    assert sorted(p.name for p in tmp_path.glob("*.db")) == sorted(
        ["counter_archive.db", f"counter_{me}.db", f"gauge_livesum_{me}.db"]
    )
    after = merged(list(tmp_path.glob("*.db")))
    assert value(after, "c") == 7.0
    assert value(after, "g") == 1.0


class Crash(BaseException):
    """Stands in for SIGKILL in the middle of a compaction."""


@pytest.mark.parametrize("crash_at", ["before-replace", "before-unlink"])
def test_compaction_killed_midway_counts_the_worker_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    write_db(tmp_path / "counter_archive.db", [("c", 10.0, 0.0)])
    source = tmp_path / f"counter_{dead_pid()}.db"
    write_db(source, [("c", 5.0, 0.0)])
    real_replace, real_unlink = os.replace, os.unlink

    def replace(src: Any, dst: Any) -> None:
        if crash_at == "before-replace" and str(dst).endswith("counter_archive.db"):
            raise Crash
        real_replace(src, dst)

    def unlink(path: Any) -> None:
        if crash_at == "before-unlink" and str(path) == str(source):
            raise Crash
        real_unlink(path)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", replace)
        patch.setattr(os, "unlink", unlink)
        with pytest.raises(Crash):
            compact(str(tmp_path))
    compact(str(tmp_path))
    assert not source.exists()
    assert value(merged(list(tmp_path.glob("*.db"))), "c") == 15.0


def test_collector_serves_merged_values_without_dead_workers_live_gauges(
    dead_workers: Path,
) -> None:
    registry = CollectorRegistry()
    CompactingCollector(registry, path=str(dead_workers))
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "jobs_total", model="a") == 6
    assert value(samples, "latency_seconds_count", model="a") == 6
    assert not [key for key in samples if key[0] in ("inflight", "temp")]
    assert writer_pids(dead_workers) == set()


def test_scrape_racing_another_workers_compaction_counts_each_worker_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_db(tmp_path / "counter_archive.db", [("c", 10.0, 0.0)])
    write_db(tmp_path / f"counter_{dead_pid()}.db", [("c", 5.0, 0.0)])
    real_compact, real_read = compact, DirectoryReader.read
    other = threading.Thread(target=real_compact, args=(str(tmp_path),))

    def read_after_another_compaction(self: DirectoryReader, files: list[str]) -> Any:
        # Another worker compacts between this scrape's glob and its reads. It must wait
        # for the reads (give it ample time to get ahead if it could).
        if other.ident is None:
            other.start()
            other.join(timeout=0.3)
        return real_read(self, files)

    # As if the worker died right after this scrape's own compaction.
    monkeypatch.setattr(multiprocess, "compact", lambda path=None: 0)
    monkeypatch.setattr(DirectoryReader, "read", read_after_another_compaction)
    collected = CompactingCollector(None, path=str(tmp_path)).collect()
    other.join(timeout=10)
    assert not other.is_alive()
    assert [s.value for metric in collected for s in metric.samples] == [15.0]
    assert value(merged(list(tmp_path.glob("*.db"))), "c") == 15.0


def test_gunicorn_child_exit_hook_compacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_db(tmp_path / f"counter_{dead_pid()}.db", [("c", 5.0, 0.0)])
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    multiprocess.child_exit(server=None, worker=None)
    assert [p.name for p in tmp_path.glob("*.db")] == ["counter_archive.db"]


# -- inferwatch's own store: processes that write through it, then die -----------------------
def start_writer(directory: Path, code: str, *args: str) -> subprocess.Popen[str]:
    """A Python process in multiprocess mode (the variable set before it starts) running
    ``code``; it prints one line when it has written everything, then waits to be killed."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), root) if p)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        # The repository on the path too, for tests.support.threads.
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def written_then_killed(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """The writer's line once it has written everything, and what it logged; SIGKILLed
    then, as a worker dies."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.kill()
    _, err = proc.communicate(timeout=30)
    assert line, err
    return line.strip(), err


def collected(directory: Path) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in CompactingCollector(None, path=str(directory)).collect()
        for s in family.samples
    }


THREADED_WRITER = """
import sys, threading
import prometheus_client
from inferwatch.metrics import Counter, Gauge, Histogram, _base, counter, gauge, histogram, store
from tests.support.threads import switching_inside

threads, keys, passes = (int(a) for a in sys.argv[1:])
jobs = Counter("jobs", "J.", ["key"], registry=None)
peak = Gauge("peak", "P.", ["key"], multiprocess_mode="max", registry=None)
latency = Histogram("latency_seconds", "L.", ["key"], buckets=[1.0], registry=None)
theirs = prometheus_client.Counter("theirs", "T.", ["key"], registry=None)
# One metric per thread too: their new series are placed in the same file at the same time,
# which only the store's lock keeps in order.
own = [Counter(f"own{t}", "O.", ["key"], registry=None) for t in range(threads)]
waits = [Histogram(f"wait{t}_seconds", "W.", ["key"], buckets=[1.0], registry=None)
         for t in range(threads)]
start = threading.Barrier(threads)

def work(t):
    for p in range(passes):
        for k in range(keys):
            if p == 0:
                start.wait()  # every thread at the same new series at the same moment
            key = f"k{k}"
            jobs.labels(key).inc()
            peak.labels(key).inc()
            latency.labels(key).observe(0.5)
            theirs.labels(key).inc()
            own[t].labels(key).inc()
            waits[t].labels(key).observe(2.0)

# A thread switch may come between any two bytecodes of the writes and of their placing.
with switching_inside(_base, counter, gauge, histogram, store):
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
assert store.active() is not None
print(type(jobs.labels("k0")).__name__, type(theirs.labels("k0")._value).__name__, flush=True)
import time; time.sleep(600)  # until killed
"""


def test_threads_writing_through_the_store_leave_exact_totals_in_a_killed_workers_files(
    tmp_path: Path,
) -> None:
    threads, keys, passes = 16, 300, 2
    proc = start_writer(tmp_path, THREADED_WRITER, str(threads), str(keys), str(passes))
    # Written straight into the mapping by inferwatch's children, and by prometheus_client's
    # values through the same store: one writer per file.
    assert written_then_killed(proc)[0] == "SharedCounterChild StoreValue"
    got = collected(tmp_path)  # folds the dead worker's files into the archives first
    each = threads * passes
    for k in range(keys):
        key = frozenset({("key", f"k{k}")})
        assert got[("jobs_total", key)] == each
        assert got[("theirs_total", key)] == each
        assert got[("latency_seconds_count", key)] == each
        assert got[("latency_seconds_sum", key)] == each / 2
        assert got[("peak", key)] == each
        for t in range(threads):
            assert got[(f"own{t}_total", key)] == passes
            assert got[(f"wait{t}_seconds_bucket", key | {("le", "+Inf")})] == passes
            assert got[(f"wait{t}_seconds_sum", key)] == 2 * passes
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db",
        "gauge_max_archive.db",
        "histogram_archive.db",
    ]


FORKING_WRITER = """
import os, sys
from inferwatch.metrics import Counter, Histogram

jobs = Counter("jobs", "J.", ["model"], registry=None)
latency = Histogram("latency_seconds", "L.", ["model"], buckets=[1.0], registry=None)
jobs.labels("a").inc(5)
latency.labels("a").observe(0.5)
pid = os.fork()
if pid == 0:  # the child: a new process, its own files, its values from zero
    jobs.labels("a").inc(3)
    jobs.labels("b").inc(1)
    latency.labels("a").observe(2.0)
    os._exit(0)
os.waitpid(pid, 0)
jobs.labels("a").inc(2)
latency.labels("a").observe(0.25)
print(pid, flush=True)
import time; time.sleep(600)  # until killed
"""


def test_a_forked_child_writes_files_of_its_own(tmp_path: Path) -> None:
    proc = start_writer(tmp_path, FORKING_WRITER)
    child = int(written_then_killed(proc)[0])
    assert (tmp_path / f"counter_{child}.db").exists()
    got = collected(tmp_path)
    a, b = frozenset({("model", "a")}), frozenset({("model", "b")})
    assert got[("jobs_total", a)] == 5 + 3 + 2
    assert got[("jobs_total", b)] == 1
    assert got[("latency_seconds_count", a)] == 3
    assert got[("latency_seconds_sum", a)] == 0.5 + 2.0 + 0.25
    assert got[("latency_seconds_bucket", a | {("le", "1.0")})] == 2


EARLY_WRITER = """
import logging, os, sys
logging.basicConfig()
import prometheus_client  # before inferwatch: its values open this process's files first
early = prometheus_client.Counter("early", "E.", registry=None)
early.inc(2)
from inferwatch.metrics import Counter, store

ours = Counter("ours", "O.", ["k"], registry=None)
theirs = prometheus_client.Counter("theirs", "T.", ["k"], registry=None)
pid = os.fork()  # as gunicorn --preload does
if pid == 0:
    # In the child both kinds of value start new files, and add series to them in turns:
    # prometheus_client's early value when it first notices the new pid.
    for i in range(200):
        ours.labels(f"k{i}").inc(i)
        theirs.labels(f"k{i}").inc(i)
        if i == 100:
            early.inc(1)
    os._exit(0)
os.waitpid(pid, 0)
print(store.active() is None, type(ours.labels("k0")).__name__, flush=True)
import time; time.sleep(600)  # until killed
"""


def test_values_created_before_inferwatch_keep_one_writer_per_file(tmp_path: Path) -> None:
    proc = start_writer(tmp_path, EARLY_WRITER)
    # prometheus_client opened the files first: inferwatch uses its values too (no store).
    line, logged = written_then_killed(proc)
    assert line == "True Counter"
    assert "before inferwatch was imported" in logged
    got = collected(tmp_path)
    assert got[("early_total", frozenset())] == 3
    for i in range(200):
        key = frozenset({("k", f"k{i}")})
        assert got[("ours_total", key)] == i
        assert got[("theirs_total", key)] == i


# -- the scrape's reader against prometheus_client's merge -----------------------------------
STEPPED_WRITER = """
import sys
from inferwatch.metrics import Counter, Gauge, Histogram

jobs = Counter("jobs", "J.", ["k"], registry=None)
latency = Histogram("latency_seconds", "L.", ["k"], buckets=[0.5, 1.0, 2.0], registry=None)
recent = Gauge("recent", "R.", multiprocess_mode="mostrecent", registry=None)
each = Gauge("each", "E.", multiprocess_mode="all", registry=None)
low = Gauge("low", "L.", multiprocess_mode="livemin", registry=None)
for line in sys.stdin:  # one step per line: the number of series to write
    n = int(line)
    for i in range(n):
        jobs.labels(f"k{i}").inc()
        latency.labels(f"k{i}").observe(i % 3)
    recent.labels().set(n)
    each.labels().set(n)
    low.labels().set(-n)
    print("done", flush=True)
"""


def step(proc: subprocess.Popen[str], series: int) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{series}\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "done\n"


def normalised(families: Any) -> list[tuple[Any, ...]]:
    return sorted(
        (m.name, m.type, m.documentation, s.name, tuple(sorted(s.labels.items())), s.value)
        for m in families
        for s in m.samples
    )


def test_the_reader_merges_as_prometheus_client_does_and_decodes_each_key_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inferwatch.metrics import reader

    decoded: list[str] = []  # every key the reader decodes (prometheus_client's not counted)
    counting = types.SimpleNamespace(loads=lambda key: decoded.append(key) or json.loads(key))
    monkeypatch.setattr(reader, "json", counting)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pipes: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "text": True}
    writers = [
        subprocess.Popen([sys.executable, "-c", STEPPED_WRITER], env=env, **pipes) for _ in range(2)
    ]
    collector = CompactingCollector(None, path=str(tmp_path))

    def agrees() -> list[tuple[Any, ...]]:
        ours = normalised(collector.collect())
        assert ours == normalised(MultiProcessCollector.merge(glob_db(tmp_path)))
        return ours

    try:
        # 3 series, then 2,000 (files grow past their first 64 KiB: both sides map again)
        for series in (3, 2000):
            for w in writers:
                step(w, series)
            decoded.clear()
            agrees()
            # Keys are decoded once for all files; a scrape with no new series decodes none.
            assert len(decoded) == len(set(decoded)) > 0
            decoded.clear()
            got = agrees()
            assert decoded == []
        assert ("jobs_total", (("k", "k1999"),)) in [(r[3], r[4]) for r in got]
        killed = writers.pop(0)
        killed.kill()
        killed.wait()
        after = agrees()  # this scrape folds the dead writer's files into the archives
        assert writer_pids(tmp_path) == {str(writers[0].pid)}
        assert [r[5] for r in after if r[3] == "jobs_total" and r[4] == (("k", "k0"),)] == [4.0]
        step(writers[0], 2001)
        agrees()
    finally:
        for w in writers:
            w.kill()
            w.communicate(timeout=30)


def glob_db(directory: Path) -> list[str]:
    return sorted(str(p) for p in directory.glob("*.db"))


def test_a_damaged_file_costs_its_damaged_part_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_db(tmp_path / "counter_archive.db", [("c", 10.0, 0.0), ("d", 1.0, 0.0)])
    write_db(tmp_path / f"counter_{dead_pid()}.db", [("c", 5.0, 0.0)])
    damaged = tmp_path / "counter_archive.db"
    data = bytearray(damaged.read_bytes())
    used = int.from_bytes(data[0:4], "little")
    data[used : used + 4] = (1 << 20).to_bytes(4, "little")  # an entry longer than the file
    data[0:4] = (used + 64).to_bytes(4, "little")
    damaged.write_bytes(bytes(data))
    registry = CollectorRegistry()
    CompactingCollector(registry, path=str(tmp_path))
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "c") == 15.0
    assert value(samples, "d") == 1.0
    assert "cannot read counter_archive.db" in caplog.text
