"""prometheus_client's multiprocess files, written so that a full directory cannot kill a worker.

prometheus_client grows its ``<type>_<pid>.db`` files with ``ftruncate`` and writes them
through ``mmap``. On a full filesystem (a small tmpfs or ``emptyDir`` is the recommended
place for the directory) ``ftruncate`` still succeeds, because it allocates nothing, and the
first write to a new page then raises SIGBUS, which kills the process: one series too many
takes a worker down, and its replacement dies at the same place.

:class:`GuardedMmapedDict` allocates every block with ``posix_fallocate`` before mapping it,
so a full filesystem shows up as ``ENOSPC`` (``EFBIG`` past ``RLIMIT_FSIZE``) at a point
where it can be handled. A value that finds no room is dropped: the process keeps the value
in memory as prometheus_client always does, its writes go nowhere, and each dropped write
is counted. Values that already have their place in a file keep being written exactly, so a
full directory stops only new series. Growth is retried at most once per
:data:`RETRY_SECONDS` per file, so a full directory costs no system call per write; a value
that gets its place later is written with its full in-memory total.

The file is also what :mod:`inferwatch.metrics.store` writes through: :meth:`place_all` gives
each value a fixed place once, and :attr:`~GuardedMmapedDict.view` writes a double there
with one aligned 8-byte store, so no reader ever sees a half-written value (``struct.pack_into``
zero-fills its target first, which a concurrent scrape could read as 0).

:func:`install` makes prometheus_client's own value class use it, for a process whose
prometheus_client values were created before inferwatch could give them its store.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.mmap_dict import mmap_key as _mmap_key

INITIAL_SIZE = 1 << 16  # as prometheus_client: the size of every new file
HEADER = 8  # bytes used (int32) and padding: the smallest readable file
RETRY_SECONDS = 1.0
_pack_integer = struct.Struct(b"i").pack
_unpack_integer = struct.Struct(b"i").unpack_from
# The key of a sample in a multiprocess file, prometheus_client's own function: it asks for
# lists of label names and values in its annotation but only zips them, and the metrics
# hold tuples.
mmap_key = cast("Callable[[str, str, Sequence[str], Sequence[str], str], str]", _mmap_key)
_pack_two_doubles = struct.Struct(b"dd").pack
_unpack_two_doubles = struct.Struct(b"dd").unpack_from


class _DroppedWrites:
    """This process's count of dropped writes, kept in a place reserved in its own counter
    file when that file is created, so counting needs no room that may be missing."""

    def __init__(self) -> None:
        self.key: str | None = None
        self.count = 0
        self.pid = 0
        self._file: weakref.ref[GuardedMmapedDict] | None = None

    def reserve(self, file: GuardedMmapedDict) -> None:
        """Called for each new file: the counter file of this process holds the count."""
        if self.key is None or os.path.basename(file._fname) != f"counter_{os.getpid()}.db":
            return
        if self.pid != os.getpid():  # a forked child counts its own drops, in its own file
            self.pid, self.count = os.getpid(), 0
        if file.store(self.key, float(self.count), 0.0):
            self._file = weakref.ref(file)

    def add(self) -> None:
        # Runs under prometheus_client's per-process value lock, like every write.
        self.count += 1
        file = self._file() if self._file is not None else None
        if file is not None and self.key is not None and self.pid == os.getpid():
            file.store(self.key, float(self.count), 0.0)


dropped = _DroppedWrites()


class GuardedMmapedDict(MmapedDict):
    """``MmapedDict`` whose pages are allocated before they are mapped, and which drops (and
    counts) writes that find no room instead of letting the kernel raise SIGBUS.

    Adding keys is not thread safe, as in its base: the store (or prometheus_client) does it
    under one lock per process. Writes through :attr:`view` at a placed index need no lock.
    """

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if read_mode:  # readers never grow a file
            # MmapedDict's methods are unannotated (calls through self are not excluded)
            super().__init__(filename, read_mode=True)  # type: ignore[no-untyped-call]
            return
        self._f: Any = open(filename, "a+b")  # noqa: SIM115 (closed by close())
        self._fname = filename
        self._m: Any = None  # mapped once the file has room for its header
        # The mapping as doubles, for direct writes at the indexes place_all() hands out;
        # replaced with the mapping when the file grows.
        self.view: memoryview[float] | None = None
        self._capacity = 0
        self._used = 0
        self._positions: dict[str, int] = {}
        self._retry_at = 0.0
        self._room(0)
        dropped.reserve(self)

    # -- reading and writing ----------------------------------------------------------------
    def read_value(self, key: str) -> tuple[float, float]:
        pos = self._positions.get(key)
        if pos is None:
            if not self._add(key):
                return 0.0, 0.0  # no room: a value that starts from zero in memory only
            pos = self._positions[key]
        return _unpack_two_doubles(self._m, pos)

    def write_value(self, key: str, value: float, timestamp: float) -> None:
        pos = self._positions.get(key)
        if pos is None:
            if not self._add(key):
                dropped.add()
                return
            pos = self._positions[key]
        self._m[pos : pos + 16] = _pack_two_doubles(value, timestamp)

    def store(self, key: str, value: float, timestamp: float) -> bool:
        """Write one value; False (nothing written, nothing counted) if there is no room."""
        pos = self._positions.get(key)
        if pos is None:
            if not self._add(key):
                return False
            pos = self._positions[key]
        self._m[pos : pos + 16] = _pack_two_doubles(value, timestamp)
        return True

    def place_all(self, keys: list[str]) -> list[int] | None:
        """The index in :attr:`view` of each key's value (its timestamp follows it), adding
        the keys the file does not hold yet, all of them or none: None if there is no room.
        All or none, so that a histogram never has half of its buckets in the file."""
        new = [key for key in dict.fromkeys(keys) if key not in self._positions]
        if new:
            entries = [_entry(key) for key in new]
            if not self._room(sum(len(e) for e in entries)):
                return None
            for key, entry in zip(new, entries, strict=True):
                self._m[self._used : self._used + len(entry)] = entry
                self._used += len(entry)
                self._positions[key] = self._used - 16
            # The header last: a reader in another process sees whole entries only.
            self._m[0:4] = _pack_integer(self._used)
        positions = self._positions
        return [positions[key] >> 3 for key in keys]

    def close(self) -> None:
        if self._f:
            self._release_view()
            if self._m is not None:
                self._m.close()
                self._m = None
            self._f.close()
            self._f = None

    def _map(self, m: mmap.mmap) -> None:
        # The old mapping of a grown file is not released here: a writer in another thread
        # may hold its view for the write it is doing (which lands in the same file pages);
        # it is unmapped when the last such writer lets go.
        self._m = m
        self.view = memoryview(m).cast("d")

    def _release_view(self) -> None:
        # A mapping with a view on it cannot be closed.
        if self.view is not None:
            self.view.release()
            self.view = None

    # -- room -------------------------------------------------------------------------------
    def _add(self, key: str) -> bool:
        """Give ``key`` its place (prometheus_client's layout), if there is room."""
        return self.place_all([key]) is not None

    def _room(self, size_needed: int) -> bool:
        """Make sure ``size_needed`` more bytes fit, mapping or growing the file; False if the
        filesystem refuses (tried again after :data:`RETRY_SECONDS`)."""
        if self._m is not None and self._used + size_needed <= self._capacity:
            return True
        now = time.monotonic()
        if now < self._retry_at:
            return False
        fd = self._f.fileno()
        mapped = self._m is not None
        # An existing file of this pid (a restarted worker that got a reused pid) is
        # continued, as prometheus_client does; its pages are allocated first too.
        size = self._capacity if mapped else os.fstat(fd).st_size
        start = size if mapped else 0
        capacity = max(-(-size // 8) * 8, INITIAL_SIZE)  # whole doubles, for the view
        while (self._used if mapped else HEADER) + size_needed > capacity:
            capacity *= 2
        try:
            os.posix_fallocate(fd, start, capacity - start)
            m = mmap.mmap(fd, capacity)
        except OSError:  # ENOSPC, EFBIG past RLIMIT_FSIZE, EDQUOT, ENOMEM: no room
            self._retry_at = now + RETRY_SECONDS
            # A refused allocation may still have grown the file (glibc's fallback, some
            # filesystems): give back what is not ours, so no reader sees unbacked pages.
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size > size:
                    os.ftruncate(fd, size)
            return False
        self._map(m)
        self._capacity = capacity
        if not mapped:
            self._load()  # an existing file may already be fuller than the header
            return self._room(size_needed)
        return True

    def _load(self) -> None:
        self._used = _unpack_integer(self._m, 0)[0]
        if self._used == 0:
            self._used = HEADER
            self._m[0:4] = _pack_integer(self._used)
        else:
            for key, _, _, pos in self._read_all_values():  # type: ignore[no-untyped-call]
                self._positions[key] = pos


def _entry(key: str) -> bytes:
    """One key with its value and timestamp (both 0), in prometheus_client's layout: the
    length, the UTF-8 key padded so that the value is 8-byte aligned, two doubles."""
    encoded = key.encode("utf-8")
    padded = encoded + (b" " * (8 - (len(encoded) + 4) % 8))
    return struct.pack(f"i{len(padded)}sdd".encode(), len(encoded), padded, 0.0, 0.0)


def install(dropped_key: str) -> None:
    """Make prometheus_client write its multiprocess files through :class:`GuardedMmapedDict`,
    counting dropped writes in the counter sample whose mmap key is ``dropped_key``.

    prometheus_client looks ``MmapedDict`` up in its ``values`` module each time it opens a
    file, so this covers every file the process opens from now on."""
    dropped.key = dropped_key
    values.MmapedDict = GuardedMmapedDict  # type: ignore[attr-defined]  # not re-exported
