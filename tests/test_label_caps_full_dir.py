"""A full multiprocess directory drops new series and counts them; it never kills a worker.

prometheus_client alone dies of SIGBUS when a metric file grows on a full filesystem. Two
real ways to fill one, without root: a tmpfs of a few hundred KiB mounted in a user and
mount namespace of the server's own (where unprivileged namespaces are allowed), and
``RLIMIT_FSIZE`` in each worker, past which no file may grow (EFBIG; Python ignores
SIGXFSZ). Only the tmpfs shows the SIGBUS itself; the limit works everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from inferwatch.metrics.multiprocess import CompactingCollector
from inferwatch.metrics.shared import DROPPED_WRITES, INSTRUMENTATION_ERRORS
from tests.support import Metrics, wait_until
from tests.support.multiworker import Workers, multiworker

SERIES = "multiworker_series_total"
DROPPED = INSTRUMENTATION_ERRORS + "_total"
FAST = "http_server_request_duration_seconds_count"
FILE_SIZE_LIMIT = 1 << 16  # each file keeps its first 64 KiB and can never grow
TMPFS_SIZE = "512k"  # two workers' first files (3 x 64 KiB each) and a little growth
BATCHES, PER_BATCH = 50, 100  # 5000 new series: far more than either directory holds


def dropped(metrics: Metrics) -> float | None:
    return metrics.value(DROPPED, component=DROPPED_WRITES)


# -- one process, the file format itself -----------------------------------------------------
WRITER = """
import json, os, resource, sys
import prometheus_client
import inferwatch.metrics
from inferwatch.metrics import mmapfile

mmapfile.RETRY_SECONDS = 0.0  # retry at once: the test decides when there is room again
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, hard))
c = prometheus_client.Counter("filler", "F.", ["i"], registry=None)
stored = 0
while mmapfile.dropped.count == 0:
    c.labels(str(stored)).inc()
    stored += 1
stored -= 1  # the last one was dropped
late = c.labels("late")
late.inc(2)  # no room: dropped, but kept in memory
c.labels("0").inc(10)  # an old series still has its place
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
late.inc(3)  # room again: written with its whole total
print(json.dumps({"stored": stored, "dropped": mmapfile.dropped.count}))
"""


def test_a_full_file_drops_new_values_keeps_old_ones_and_catches_up(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", WRITER], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    collected = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in CompactingCollector(None, path=str(tmp_path)).collect()
        for s in family.samples
    }
    filler = {k: v for k, v in collected.items() if k[0] == "filler_total"}
    # Every series written before the file was full, the late one, nothing else.
    assert len(filler) == result["stored"] + 1
    assert collected[("filler_total", (("i", "0"),))] == 11
    assert collected[("filler_total", (("i", "late"),))] == 5
    # Two dropped writes (the first filler that found no room, and late.inc(2)), counted
    # in the place the counter file reserved for them.
    assert result["dropped"] == 2
    assert collected[(DROPPED, (("component", DROPPED_WRITES),))] == 2


# -- uvicorn --workers 2 ---------------------------------------------------------------------
def tmpfs_wrapper() -> list[str]:
    """A command prefix that mounts a small tmpfs on the directory, seen only by the
    server; skips the test where unprivileged namespaces are not allowed."""
    unshare = shutil.which("unshare")
    probe = [unshare, "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"] if unshare else []
    if not probe or subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip("no unprivileged user and mount namespaces here to mount a tmpfs")
    mount = f'mount -t tmpfs -o size={TMPFS_SIZE} tmpfs "$PROMETHEUS_MULTIPROC_DIR" && exec "$@"'
    return [unshare, "-rm", "sh", "-c", mount, "sh"]


def served_everywhere(srv: Workers, paths: Sequence[str]) -> dict[str, int]:
    """Send each of ``paths`` until every worker has served it (so that its series have
    their places in every worker's files); how many requests went to each path."""
    live = srv.workers()
    seen: dict[str, set[int]] = {path: set() for path in paths}
    sent = dict.fromkeys(paths, 0)

    def everywhere() -> bool:
        for path in paths:
            seen[path].update(srv.send(path, 2 * srv.count))
            sent[path] += 2 * srv.count
        return all(pids >= live for pids in seen.values())

    wait_until(everywhere, 30.0, interval=0.01, message=lambda: f"every worker to serve {seen}")
    return sent


def wait_fast(srv: Workers, n: int) -> None:
    wait_until(
        lambda: srv.scrape().value(FAST, http_route="/fast") == n,
        30.0,
        message=f"{n} recorded /fast requests",
    )


@pytest.mark.parametrize("fill", ["file-size-limit", "tmpfs"])
def test_full_directory_drops_new_series_counts_them_and_keeps_serving(
    tmp_path: Path, fill: str
) -> None:
    if fill == "tmpfs":
        options: dict = {"wrapper": tmpfs_wrapper()}
    else:
        options = {"env": {"MULTIWORKER_FILE_SIZE_LIMIT": str(FILE_SIZE_LIMIT)}}
    with multiworker(tmp_path, workers=2, **options) as srv:
        workers = srv.workers()
        fast = served_everywhere(srv, ["/fast", "/series/warm/0"])["/fast"]
        wait_fast(srv, fast)

        srv.send([f"/series/b{i}/{PER_BATCH}" for i in range(BATCHES)])  # all answered 200
        incs = BATCHES * PER_BATCH

        # Each write either landed in a file or was dropped and counted; nothing else.
        def accounted() -> Metrics | None:
            metrics = srv.scrape()
            return metrics if len(metrics.samples(SERIES)) + dropped(metrics) == incs else None

        metrics = wait_until(accounted, 30.0, interval=0.05, message="stored + dropped writes")
        assert dropped(metrics) > 0, "the directory never filled up"
        assert {s.value for s in metrics.samples(SERIES)} == {1.0}

        # Series that had their place keep counting exactly, and no worker ever died.
        srv.send("/fast", 50)
        wait_fast(srv, fast + 50)
        assert srv.workers() == workers
