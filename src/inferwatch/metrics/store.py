"""This process's multiprocess values, each written straight into its place in the process's
own files: a write costs what an in-process write costs, plus one store into the mapping.

prometheus_client's file-backed value (``MmapedValue``) takes one lock for the whole
process on every write, looks the value's key up in a dict, asks the kernel for the pid (to
notice a fork) and packs two doubles into the mapping: a few microseconds per write, and a
request writes several. Here a value is placed once, when its child is created: it keeps
the file and the index of its double in the file's mapping (:meth:`GuardedMmapedDict.
place_all`), and a write is the child's in-process update followed by one aligned 8-byte
store at that index, under the child's own lock, the same lock in-process children take.
No other lock is needed: a process owns its files (no other process writes them), and the
threads of this process writing one value hold that value's lock.

Files, keys and layout are prometheus_client's (``<kind>_<pid>.db``), so compaction, the
full-directory guard and prometheus_client's own ``MultiProcessCollector`` read them as
before. A file must have one writer per process, so the application's own
prometheus_client metrics write through the store too: :func:`install` makes
:class:`StoreValue` prometheus_client's value class.

A fork (gunicorn ``--preload``, ``multiprocessing``) gives the child a copy of every
value; a handler run in the child right after the fork unplaces them all and zeroes them,
as prometheus_client does when it notices a new pid, so the child writes files of its own
from its first write on. A value that found no room (a full directory) is unplaced too: its
writes are counted as dropped until there is room again, and it is then written with its
whole in-memory total, as :mod:`inferwatch.metrics.mmapfile` describes.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
import weakref
from typing import Any, Protocol

from prometheus_client import values
from prometheus_client.mmap_dict import mmap_key

from inferwatch.metrics import mmapfile
from inferwatch.metrics.mmapfile import GuardedMmapedDict

log = logging.getLogger("inferwatch")


class Placed(Protocol):
    """What the store places: one or more consecutive samples of one file."""

    def _store_where(self) -> tuple[str, list[str]]:
        """The file prefix (``counter``, ``gauge_livesum``, ...) and the keys of the samples."""

    def _store_placed(self, file: GuardedMmapedDict, slots: list[int], load: bool) -> None:
        """Take the places; ``load``: start from the values the file holds (0 for new keys),
        else write the values held in memory (a late placement)."""

    def _store_forked(self) -> None:
        """Forget the places and zero the values: this is a new process."""


class ProcessStore:
    """The files of this process in the multiprocess directory, and every value placed in
    them (weakly: a value dropped by its metric is forgotten here too)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._files: dict[str, GuardedMmapedDict] = {}
        self._pid = os.getpid()
        self._placed: weakref.WeakSet[Any] = weakref.WeakSet()
        # Files that could not even be created (descriptors or inodes exhausted) are tried
        # again after this, so that a write does not cost a failing open() each time.
        self._retry_at: dict[str, float] = {}

    def place(self, value: Placed) -> None:
        """Give a new value its places, starting from what the file already holds for its
        keys (prometheus_client does the same: a worker that got the pid of a dead one
        continues its file). Without room it stays unplaced; see :meth:`write_late`."""
        with self._lock:
            self._placed.add(value)
            found = self._find(value)
            if found is not None:
                value._store_placed(*found, load=True)

    def write_late(self, value: Placed) -> None:
        """A write to a value that has no place: place it now and write its whole total, or
        count the write as dropped. Called under the value's own lock."""
        with self._lock:
            found = self._find(value)
            if found is None:
                mmapfile.dropped.add()
                return
            value._store_placed(*found, load=False)

    def _find(self, value: Placed) -> tuple[GuardedMmapedDict, list[int]] | None:
        prefix, keys = value._store_where()
        file = self._files.get(prefix) or self._open(prefix)
        if file is None:
            return None
        slots = file.place_all(keys)
        return None if slots is None else (file, slots)

    def _open(self, prefix: str) -> GuardedMmapedDict | None:
        now = time.monotonic()
        if now < self._retry_at.get(prefix, 0.0):
            return None
        path = os.path.join(self.directory, f"{prefix}_{self._pid}.db")
        try:
            file = self._files[prefix] = GuardedMmapedDict(path)
        except OSError as exc:
            self._retry_at[prefix] = now + mmapfile.RETRY_SECONDS
            log.warning("inferwatch: cannot open %s (%r)", os.path.basename(path), exc)
            return None
        return file

    def _forked(self) -> None:
        """In the child, right after a fork: the parent's files stay the parent's."""
        self._lock = threading.Lock()  # may have been held by another thread of the parent
        self._files = {}
        self._retry_at = {}
        self._pid = os.getpid()
        for value in list(self._placed):
            value._store_forked()


class StoreValue:
    """prometheus_client's value class (``values.ValueClass``), written through the store, so
    that prometheus_client's metrics and inferwatch's share one writer per file."""

    _multiprocess = True
    __slots__ = ("__weakref__", "_file", "_key", "_lock", "_prefix", "_slot", "_timestamp",
                 "_value")  # fmt: skip

    def __init__(
        self,
        typ: str,
        metric_name: str,
        name: str,
        labelnames: Any,
        labelvalues: Any,
        help_text: str,
        multiprocess_mode: str = "",
        **kwargs: Any,
    ) -> None:
        self._prefix = f"{typ}_{multiprocess_mode}" if typ == "gauge" else typ
        self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
        self._lock = threading.Lock()
        self._value = self._timestamp = 0.0
        self._file: GuardedMmapedDict | None = None
        self._slot = 0
        _require_store().place(self)

    def inc(self, amount: float) -> None:
        with self._lock:
            self._value += amount
            self._timestamp = 0.0
            self._write()

    def set(self, value: float, timestamp: float | None = None) -> None:
        with self._lock:
            self._value = value
            self._timestamp = timestamp or 0.0
            self._write()

    def set_exemplar(self, exemplar: Any) -> None:
        """Multiprocess files carry no exemplars (as prometheus_client's own)."""

    def get(self) -> float:
        return self._value

    def get_exemplar(self) -> None:
        return None

    def _write(self) -> None:
        slot = self._slot
        if slot:
            view: memoryview[float] = self._file.view  # type: ignore[union-attr,assignment]
            view[slot] = self._value
            view[slot + 1] = self._timestamp
        else:
            _require_store().write_late(self)

    def _store_where(self) -> tuple[str, list[str]]:
        return self._prefix, [self._key]

    def _store_placed(self, file: GuardedMmapedDict, slots: list[int], load: bool) -> None:
        view = file.view
        assert view is not None  # placed keys live in a mapped file
        slot = slots[0]
        if load:
            self._value, self._timestamp = view[slot], view[slot + 1]
        else:
            view[slot], view[slot + 1] = self._value, self._timestamp
        self._file, self._slot = file, slot

    def _store_forked(self) -> None:
        self._value = self._timestamp = 0.0
        self._file, self._slot = None, 0


_store: ProcessStore | None = None
_install_lock = threading.Lock()


def active() -> ProcessStore | None:
    """The store of this process, or None: not in multiprocess mode, or prometheus_client
    wrote to the directory before inferwatch could install it (see :func:`install`)."""
    return _store


def _require_store() -> ProcessStore:
    if _store is None:
        raise RuntimeError("inferwatch's multiprocess store is not installed")
    return _store


def install(directory: str) -> ProcessStore | None:
    """Create this process's store and make prometheus_client write through it.

    Only while this process has no file in ``directory`` yet: a file of this pid means
    prometheus_client values were created before inferwatch was imported, and they keep
    writing that file through prometheus_client's own value class; a second writer would
    corrupt it. Then inferwatch's metrics use prometheus_client's values too (slower writes,
    the same figures), and a warning says so.
    """
    global _store
    with _install_lock:
        if _store is not None:
            return _store
        pid = os.getpid()
        if glob.glob(os.path.join(glob.escape(directory), f"*_{pid}.db")):
            log.warning(
                "inferwatch: this process wrote prometheus_client multiprocess files before "
                "inferwatch was imported; its metrics use prometheus_client's slower values. "
                "Import inferwatch first to use its own."
            )
            return None
        _store = ProcessStore(directory)
        os.register_at_fork(after_in_child=_after_fork)
        values.ValueClass = StoreValue
        return _store


def _after_fork() -> None:
    if _store is not None:
        _store._forked()
