"""Bounded label values: the one cap every free-form label of inferwatch goes through.

A label whose values come from users (model names, cache names, exception types, command
names) must not grow a scrape without limit, so each keeps either an allow-list or a cap,
and folds everything else into one overflow value.

In one process the first ``max_values`` distinct values win, for the life of the process: a
series must not change its name halfway through. In multiprocess mode a per-process cap is
not a cap: four workers admit four different sets, and every restarted worker admits a new
set, which the archive files keep forever. So there the admitted values of each bound live
in the shared directory, in a small append-only file, and every worker of the service (and
every worker that replaces one) admits the same values, at most ``max_values`` of them in
all however many workers come and go.

Cost: a value already admitted is one set lookup, as in one process. A value this process
has not met before reads what other workers have admitted since its last look, under an
exclusive lock, and appends it if there is room. Once the file holds ``max_values`` values
it can never change again, so from then on new values are folded without any I/O either.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO

from prometheus_client.registry import CollectorRegistry

from inferwatch.metrics import multiprocess
from inferwatch.metrics._base import label_value
from inferwatch.metrics.shared import once_per_registry

log = logging.getLogger("inferwatch")

# The one overflow value of every bounded label, and of every fixed vocabulary (HTTP methods,
# status classes, SQL keywords, PostgreSQL states): OpenTelemetry's spelling for "another
# value", so one matcher (``!="_OTHER"``) finds what was folded on any metric.
OTHER = "_OTHER"

# Also part of a file name in the multiprocess directory, so it must stay a plain name.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
FILE_PREFIX = "labels_"
FILE_SUFFIX = ".jsonl"
# After a failed write (a full directory) new values are folded without I/O for this long,
# so a flood of new values cannot turn into a flood of failing writes.
RETRY_SECONDS = 1.0


def shared_file(directory: str, name: str) -> str:
    """Where the admitted values of bound ``name`` live in the multiprocess directory.

    Not a ``*.db`` file: prometheus_client's collector and :func:`multiprocess.compact`
    only read ``*.db`` files, so compaction leaves these alone."""
    return os.path.join(directory, f"{FILE_PREFIX}{name}{FILE_SUFFIX}")


class BoundedLabel:
    """Maps raw values of one label to at most ``max_values`` distinct values (or to an
    allow-list), and everything else to :data:`OTHER`.

    ``name`` identifies the bound across processes (the metric family, or the group of
    families sharing the label, and the label): in multiprocess mode every process that
    builds a bound of the same name shares its admitted values. ``logger`` gets one warning
    the first time a value is folded.
    """

    def __init__(
        self,
        label: str,
        *,
        name: str,
        allowed: Iterable[str] | None = None,
        max_values: int | None = None,
        logger: logging.Logger = log,
    ) -> None:
        if not _NAME.match(name):
            raise ValueError(f"{label}: the bound's name must match {_NAME.pattern}, got {name!r}")
        self.label = label
        self.name = name
        self._log = logger
        self._admitted: set[str] = set()
        self._full = False  # no value can be admitted any more: fold without looking
        self._lock = threading.Lock()
        self._warned = False
        # Decided once: the directory is fixed for the life of the process.
        directory = multiprocess.directory() if multiprocess.enabled() else None
        self._shared = _SharedValues(shared_file(directory, name)) if directory else None
        self.reconfigure(allowed=allowed, max_values=max_values)

    @staticmethod
    def validate(
        label: str, allowed: Iterable[str] | None, max_values: int | None
    ) -> tuple[frozenset[str] | None, int | None]:
        """The (allow-list, cap) pair a bound with these arguments has; raises if invalid."""
        if allowed is not None and max_values is not None:
            raise ValueError(f"{label}: give an allow-list or a cap, not both")
        if allowed is None and (max_values is None or max_values < 1):
            raise ValueError(f"{label}: the cap must be at least 1, got {max_values!r}")
        if isinstance(allowed, str):
            raise TypeError(f"{label}: the allow-list must be a list of names, not a str")
        names = frozenset(label_value(v) for v in allowed) if allowed is not None else None
        return names, max_values

    def reconfigure(
        self, *, allowed: Iterable[str] | None = None, max_values: int | None = None
    ) -> None:
        """Change the bound; meant for before first use (values already kept stay kept)."""
        config = self.validate(self.label, allowed, max_values)
        with self._lock:
            self.allowed, self.max_values = config
            self._full = self.allowed is None and len(self._admitted) >= (self.max_values or 0)

    @property
    def config(self) -> tuple[frozenset[str] | None, int | None]:
        return self.allowed, self.max_values

    @property
    def used(self) -> bool:
        return bool(self._admitted)

    def __call__(self, value: object) -> str:
        value = label_value(value)  # the metrics' own rule: a str subclass is its characters
        if self.allowed is not None:
            if value in self.allowed:
                return value
            return self._fold(value, "is not in the allow-list")
        if value in self._admitted:  # the common case, no lock: set lookups are atomic
            return value
        if self._full:
            return self._fold(value)
        return self._admit(value)

    def _admit(self, value: str) -> str:
        cap = self.max_values or 0
        with self._lock:
            if value in self._admitted:
                return value
            if self._shared is None:
                if len(self._admitted) < cap:
                    self._admitted.add(value)
                    return value
            elif self._shared.admit(value, self._admitted, cap):
                return value
            self._full = len(self._admitted) >= cap
        return self._fold(value)

    def _fold(self, value: str, why: str = "") -> str:
        if not self._warned:  # once per label: this can fire on every request
            self._warned = True
            log_why = why or f"is past the cap of {self.max_values} values"
            self._log.warning(
                "inferwatch: %s %r %s; it and later ones are reported as %r",
                self.label, value, log_why, OTHER,
            )  # fmt: skip
        return OTHER


class _SharedValues:
    """The admitted values of one bound, one JSON string per line, in an append-only file.

    Every read and append happens under an exclusive ``flock`` on the file, so two workers
    can never both take the last free place. The file is opened anew for each operation: a
    descriptor inherited across ``fork`` would share its lock with the parent. Values are
    read incrementally from the offset of the last complete line this process has seen.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0
        self._retry_at = 0.0
        self._warned = False

    def admit(self, value: str, admitted: set[str], cap: int) -> bool:
        """Add to ``admitted`` what other processes admitted; then admit ``value`` if it is
        among them or there is room. False when it must be folded. Never raises."""
        if time.monotonic() < self._retry_at:
            return False
        try:
            with self._locked() as f:
                torn = self._read(f, admitted, cap)
                if value in admitted:
                    return True
                if len(admitted) >= cap:
                    return False
                # A writer killed mid-line leaves a torn tail; end it so it stays one
                # undecodable line instead of corrupting this one.
                line = ("\n" if torn else "") + json.dumps(value) + "\n"
                f.write(line.encode())
                f.flush()
                self._offset = f.tell()
                admitted.add(value)
                return True
        except OSError as exc:  # e.g. a full directory: fold rather than fail the caller
            self._retry_at = time.monotonic() + RETRY_SECONDS
            if not self._warned:
                self._warned = True
                log.warning(
                    "inferwatch: cannot record admitted label values in %s (%r); new values "
                    "are folded until it can", os.path.basename(self.path), exc,
                )  # fmt: skip
            return False

    @contextlib.contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file is closed
            yield f

    def _read(self, f: IO[bytes], admitted: set[str], cap: int) -> bool:
        """Take in the lines appended since the last read (the first ``cap`` distinct values
        of the file win, in file order); True if the file ends with a torn line."""
        f.seek(self._offset)
        data = f.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if len(admitted) >= cap:
                break
            with contextlib.suppress(ValueError):
                decoded = json.loads(line)
                if isinstance(decoded, str):
                    admitted.add(decoded)
        self._offset += end
        return end < len(data)


# The exception classes one kind of instrumentation meets on one registry get this many
# values of their own; rarer ones share the overflow value.
MAX_ERROR_TYPES = 50


def error_types(
    registry: CollectorRegistry | None,
    scope: str,
    *,
    max_values: int = MAX_ERROR_TYPES,
) -> BoundedLabel:
    """The bounded ``error_type`` label of one kind of instrumentation (``http``,
    ``upstream``, ``genai``) on ``registry``: one bound per registry, whatever number of
    middlewares or clients ask, whose admitted values every worker shares in multiprocess
    mode."""
    name = f"{scope}.error_type"
    return once_per_registry(
        registry,
        name,
        lambda: BoundedLabel("error_type", name=name, max_values=max_values),
    )
