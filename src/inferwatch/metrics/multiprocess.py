"""Multiprocess mode: exact totals across `uvicorn --workers N` / gunicorn workers.

Values live in per-process mmap files in prometheus_client's format (``<type>_<pid>.db`` in
``PROMETHEUS_MULTIPROC_DIR``), written through :mod:`inferwatch.metrics.store` and merged at
scrape time by :mod:`inferwatch.metrics.reader`. prometheus_client alone keeps
the files of every worker that ever ran, so the directory and the scrape time grow with each
restart, and a SIGKILLed worker's live gauges stay forever unless someone calls
``mark_process_dead``. :class:`CompactingCollector` fixes both at scrape time: files of dead
workers are folded into one archive file per type (counters and histograms keep their
totals, live gauges are dropped), so the directory holds at most one file per live worker
and type plus the archives.

Two other kinds of file live there and are left alone by compaction, which only touches
``*.db`` files: the admitted values of the label caps (``labels_<bound>.jsonl``, see
:mod:`inferwatch.metrics.labels`), which must outlive every worker, and the lock and
journal below. Writes go through :mod:`inferwatch.metrics.mmapfile`, so a full directory
drops new series instead of killing the worker.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import psutil
from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.registry import CollectorRegistry

from inferwatch.metrics.mmapfile import HEADER, GuardedMmapedDict
from inferwatch.metrics.reader import DirectoryReader

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVE = "archive"
_LOCK_FILE = ".inferwatch-compaction.lock"
# Names the source being folded and the inode its new archive will have; lets the next
# compaction tell "archive replaced, source not yet removed" from "archive not replaced".
_JOURNAL = ".inferwatch-compaction.journal"

log = logging.getLogger(__name__)


def directory() -> str | None:
    return os.environ.get(ENV_VAR) or None


def configured() -> bool:
    """True when this process writes prometheus_client's multiprocess files: the variable
    was set before prometheus_client was imported and names a directory. Never raises."""
    path = directory()
    return path is not None and os.path.isdir(path) and values.ValueClass is not values.MutexValue


def enabled() -> bool:
    """True when metrics must be written to the shared multiprocess directory."""
    path = directory()
    if path is None:
        return False
    if not os.path.isdir(path):
        raise RuntimeError(f"{ENV_VAR}={path!r} is not a directory; create it before starting")
    if values.ValueClass is values.MutexValue:
        raise RuntimeError(
            f"{ENV_VAR} was set after prometheus_client was imported; set it in the "
            "environment of the server process (before Python starts) instead"
        )
    return True


def _process_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        # AccessDenied means it exists but is not ours: still alive.
        return psutil.pid_exists(pid)


def _parse(path: str) -> tuple[str, str, str] | None:
    """``counter_1.db`` -> (counter, "", "1"); ``gauge_livesum_1.db`` -> (gauge, livesum, "1")."""
    parts = os.path.basename(path)[: -len(".db")].split("_")
    if parts[0] == "gauge" and len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if parts[0] in ("counter", "histogram", "summary") and len(parts) == 2:
        return parts[0], "", parts[1]
    return None


def _archive_name(kind: str, mode: str) -> str:
    return f"gauge_{mode}_{ARCHIVE}.db" if kind == "gauge" else f"{kind}_{ARCHIVE}.db"


def _combine(
    mode: str, old: tuple[float, float] | None, new: tuple[float, float]
) -> tuple[float, float]:
    """Fold a dead worker's (value, timestamp) into the archive's, per gauge mode."""
    if old is None:
        return new
    if mode in ("max", "min"):
        pick = max if mode == "max" else min
        return pick(old[0], new[0]), max(old[1], new[1])
    if mode == "mostrecent":
        return new if new[1] >= old[1] else old
    return old[0] + new[0], max(old[1], new[1])  # counters, histograms, summaries, sum


@contextlib.contextmanager
def _locked(path: str, *, exclusive: bool = True) -> Iterator[None]:
    # flock locks belong to the open file description, so threads of one process exclude
    # each other too, and a worker killed while holding the lock releases it.
    with open(os.path.join(path, _LOCK_FILE), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def compact(path: str | None = None) -> int:
    """Fold the files of dead workers into the archives; return how many files were removed.

    Safe to call from every worker and the gunicorn master at once: an exclusive file lock
    serialises compactions, and scrapes read under a shared lock, so no scrape sees a dead
    worker's values both in its own file and in the archive.

    Crash safety: each archive is rewritten to a temporary file and moved into place with
    ``os.replace``. A compaction killed after that move but before it unlinks the source
    would count that worker twice; a journal written just before the move records the
    source and the new archive's inode, and the next compaction (every scrape starts with
    one) removes such a source instead of folding it in again. Nothing is fsynced: the
    directory is scratch space for one server run, wiped before the next.
    """
    path = path or directory()
    if path is None:
        return 0
    removed = 0
    with _locked(path):
        removed += _recover(path)
        for source in sorted(glob.glob(os.path.join(path, "*.db"))):
            parsed = _parse(source)
            if parsed is None or parsed[2] == ARCHIVE:
                continue
            kind, mode, pid = parsed
            if not pid.isdigit() or _process_alive(int(pid)):
                continue
            # Live gauges describe the dead process only; "all" gauges are per-pid series
            # of a pid that no longer exists. Everything else keeps its contribution.
            if not (kind == "gauge" and (mode.startswith("live") or mode == "all")):
                _merge_into_archive(path, source, kind, mode)
            with contextlib.suppress(FileNotFoundError):  # e.g. mark_process_dead got there
                os.unlink(source)
            removed += 1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(path, _JOURNAL))
    return removed


def _recover(path: str) -> int:
    """Finish a compaction that died between replacing an archive and unlinking its source."""
    journal = os.path.join(path, _JOURNAL)
    try:
        with open(journal) as f:
            entry = json.load(f)
        source = os.path.join(path, os.path.basename(entry["source"]))
        archive = os.path.join(path, os.path.basename(entry["archive"]))
        inode = int(entry["inode"])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError):
        os.unlink(journal)  # written atomically, so never torn; ignore anything else
        return 0
    removed = 0
    parsed = _parse(source) if source.endswith(".db") else None
    pid = parsed[2] if parsed else ""
    with contextlib.suppress(FileNotFoundError):
        # The pid check spares a file that a new process with a reused pid has since created.
        if os.stat(archive).st_ino == inode and pid.isdigit() and not _process_alive(int(pid)):
            os.unlink(source)
            removed = 1
    os.unlink(journal)
    return removed


def _readable(path: str) -> bool:
    """False for a file without even its header: a process that found the directory full
    when it created the file (see :mod:`inferwatch.metrics.mmapfile`) left it empty."""
    try:
        return os.stat(path).st_size >= HEADER
    except FileNotFoundError:
        return False


def _values(path: str) -> list[tuple[str, float, float]]:
    if not _readable(path):
        return []
    return [(k, v, t) for k, v, t, _ in MmapedDict.read_all_values_from_file(path)]


def _merge_into_archive(path: str, source: str, kind: str, mode: str) -> None:
    archive = os.path.join(path, _archive_name(kind, mode))
    merged: dict[str, tuple[float, float]] = {}
    if os.path.exists(archive):
        for key, value, timestamp in _values(archive):
            merged[key] = (value, timestamp)
    for key, value, timestamp in _values(source):
        merged[key] = _combine(mode, merged.get(key), (value, timestamp))
    tmp = archive + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    # Guarded: on a full directory the new archive fails here with ENOSPC, and the dead
    # worker's file stays and keeps being read as it is, instead of SIGBUS in a scrape.
    out = GuardedMmapedDict(tmp)
    try:
        for key, (value, timestamp) in merged.items():
            if not out.store(key, value, timestamp):
                raise OSError(errno.ENOSPC, "no room for the archive", archive)
    except BaseException:
        out.close()
        os.unlink(tmp)
        raise
    out.close()
    _write_journal(path, source, archive, os.stat(tmp).st_ino)
    os.replace(tmp, archive)


def _write_journal(path: str, source: str, archive: str, inode: int) -> None:
    journal = os.path.join(path, _JOURNAL)
    entry = {
        "source": os.path.basename(source),
        "archive": os.path.basename(archive),
        "inode": inode,
    }
    with open(journal + ".tmp", "w") as f:
        json.dump(entry, f)
    os.replace(journal + ".tmp", journal)


class CompactingCollector:
    """prometheus_client's ``MultiProcessCollector``, plus clean-up after dead workers, and a
    reader that keeps what cannot change between scrapes (see :mod:`~inferwatch.metrics.reader`).
    """

    def __init__(self, registry: CollectorRegistry | None, path: str | None = None) -> None:
        path = path or directory()
        if not path or not os.path.isdir(path):
            raise ValueError(f"{ENV_VAR} is not set or not a directory: {path!r}")
        self.path = path
        self._reader = DirectoryReader()
        self._reading = threading.Lock()  # one scrape at a time uses the reader's cache
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Any]:
        try:
            compact(self.path)
        except Exception as exc:  # never fail a scrape over housekeeping
            log.warning("multiprocess compaction failed: %r", exc)
        # Read under the shared lock: a concurrent compaction in another worker must not
        # move a dead worker's file into the archive between our glob and our reads, which
        # would count it twice (a spurious jump) or fail the scrape on the vanished file.
        with self._reading, _locked(self.path, exclusive=False):
            files = sorted(glob.glob(os.path.join(glob.escape(self.path), "*.db")))
            return self._reader.read(files)


def exposition_registry() -> CollectorRegistry:
    """A registry that reads every worker's values; use it for /metrics in multiprocess mode."""
    registry = CollectorRegistry()
    CompactingCollector(registry)
    return registry


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook (``child_exit = inferwatch.metrics.multiprocess.child_exit``): runs in the
    master after a worker is reaped, so its files are folded even if nobody scrapes."""
    compact()
