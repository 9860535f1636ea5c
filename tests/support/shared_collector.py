"""One poller for a multi-worker service: N workers, one process talking to NVML (or any
other backend), every worker able to answer the scrape.

:class:`SharedCollector` wraps a collector. The first worker to take an exclusive ``fcntl``
lock on ``<directory>/.inferwatch-<name>.lock`` becomes the poller: it runs the collector
(through a :class:`CollectorRunner`, so with a timeout and the success/duration metrics)
every ``interval`` seconds in a background thread and atomically replaces the snapshot
``<directory>/inferwatch-<name>.prom``. Every worker's ``collect()`` serves that snapshot.

The kernel drops the lock when the poller dies, however it dies; the next worker to be
scraped takes it over. A snapshot older than ``max_age`` is not served (no stale values).
Leadership is only sought from ``collect()``, so creating the wrapper before a fork (gunicorn
``--preload``) is safe; a process that finds itself forked from the poller starts afresh.

In multiprocess mode the scrape reads the shared metrics directory only, so register the
wrapper in the registry that the ``/metrics`` endpoint actually serves. The standalone
exporter needs none of this: it is a single process.

Test support, not library: nothing in the package used it, so it left the wheel. It stays as
a worked example of leader election over ``fcntl`` that its test keeps honest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from inferwatch.exporters.collector import DEFAULT_TIMEOUT, Collector, CollectorRunner


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


class SharedCollector:
    def __init__(
        self,
        collector: Collector,
        directory: str | os.PathLike[str],
        *,
        interval: float = 5.0,
        timeout: float = DEFAULT_TIMEOUT,
        max_age: float | None = None,
    ) -> None:
        self.collector = collector
        self.name = collector.name
        directory = Path(directory)
        self.snapshot = directory / f"inferwatch-{collector.name}.prom"
        self.lock_path = directory / f".inferwatch-{collector.name}.lock"
        self.interval = interval
        self.timeout = timeout
        self.max_age = max_age if max_age is not None else 3 * interval + timeout
        self._runner = CollectorRunner([collector], timeout=timeout, cache_ttl=0)
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._lock_file: IO[str] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        return self._lock_file is not None and self._pid == os.getpid()

    def collect(self) -> Iterator[Metric]:
        self._try_to_lead()
        try:
            age = time.time() - self.snapshot.stat().st_mtime
            text = self.snapshot.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        if age <= self.max_age:
            yield from text_string_to_metric_families(text)

    def _try_to_lead(self) -> None:
        with self._guard:
            if self._pid != os.getpid():  # forked: the lock and thread belong to the parent
                self._pid, self._lock_file, self._thread = os.getpid(), None, None
                self._stop = threading.Event()
            if self._lock_file is not None:
                return
            lock = open(self.lock_path, "a+")  # noqa: SIM115 -- held for the process's life
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()  # another process polls
                return
            self._lock_file = lock
            self.poll()  # the scrape that elected us gets fresh data, bounded by the timeout
            self._thread = threading.Thread(
                target=self._loop, name=f"inferwatch-shared-{self.name}", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Run the collector once and publish the result (the poller only)."""
        body = generate_latest(_Families(self._runner.collect()))
        tmp = self.snapshot.with_name(f"{self.snapshot.name}.{os.getpid()}.tmp")
        tmp.write_bytes(body)
        os.replace(tmp, self.snapshot)  # readers see the old or the new file, never half

    def close(self) -> None:
        """Stop polling and give up the lock (another worker takes over)."""
        with self._guard:
            self._stop.set()
            thread, self._thread = self._thread, None
            lock, self._lock_file = self._lock_file, None
        if thread is not None:
            thread.join(self.timeout + 1)
        if lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
