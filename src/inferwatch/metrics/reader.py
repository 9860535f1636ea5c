"""Reading the multiprocess directory at scrape time, keeping between scrapes what cannot change.

prometheus_client's ``MultiProcessCollector`` reads every file whole on every scrape, decodes
every key of every file (a JSON document naming the metric, sample and labels), builds a
sample tuple for each value of each file and merges them through nested dictionaries: for a
service with a few thousand series and four workers, tens of milliseconds of CPU under the
GIL, in the worker that answers the scrape.

Most of that work gives the same answer every time. A key, once in a file, keeps its place
for the life of the file, and new keys are only ever appended. So :class:`DirectoryReader`
keeps, for each file, a read-only mapping and the places of the values it has seen, with the
offset up to which it has read the keys; and, for each key, the decoded series. A scrape reads
the keys appended since the last one (none, in a steady state), then only the values: one
8-byte load per value, straight from the mapping, added into the series' total. The families
are rebuilt from a layout that changes only when a new series appears.

The merge is prometheus_client's, sample for sample: counters, histograms and summaries
summed over files; gauges combined by their mode (``sum``, ``min``, ``max``, the value with
the latest timestamp for ``mostrecent``, one series per pid for ``all``); histogram buckets
made cumulative with a ``_count`` from the ``+Inf`` total.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

from inferwatch.metrics.mmapfile import HEADER

log = logging.getLogger("inferwatch")

_unpack_int = struct.Struct("i").unpack_from
# How the values of one sample are combined across files, by file kind.
_SUM, _MIN, _MAX, _RECENT, _PER_PID = range(5)
_GAUGE_MODES = {
    "sum": _SUM, "livesum": _SUM, "min": _MIN, "livemin": _MIN, "max": _MAX, "livemax": _MAX,
    "mostrecent": _RECENT, "livemostrecent": _RECENT, "all": _PER_PID, "liveall": _PER_PID,
}  # fmt: skip


@dataclass(slots=True)
class _Series:
    """One sample of the output: decoded from a key once (per pid for ``all`` gauges)."""

    family: str
    typ: str
    help: str
    name: str
    labels: dict[str, str]  # shared by every scrape's sample; never mutated
    # For a histogram bucket: its bound, and the labels without `le` that group it.
    le: float | None = None
    group: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _File:
    """A file's read-only mapping, and the series and value index of each entry read so far."""

    inode: int
    combine: int
    pid: str
    mapping: mmap.mmap | None = None
    view: memoryview[float] | None = None
    parsed: int = HEADER  # the offset of the first entry not read yet
    series: list[int] = field(default_factory=list)  # series id per entry
    slots: list[int] = field(default_factory=list)  # index of the entry's value in `view`
    broken: bool = False

    def close(self) -> None:
        if self.view is not None:
            self.view.release()
            self.view = None
        if self.mapping is not None:
            self.mapping.close()
            self.mapping = None


def _kind(path: str) -> tuple[str, int, str] | None:
    """``gauge_livesum_12.db`` -> ("gauge", _SUM, "12"); None for a name that is not a
    metrics file (prometheus_client's naming: ``<type>[_<mode>]_<pid>.db``)."""
    parts = os.path.basename(path)[: -len(".db")].split("_")
    if parts[0] == "gauge" and len(parts) == 3 and parts[1] in _GAUGE_MODES:
        return "gauge", _GAUGE_MODES[parts[1]], parts[2]
    if parts[0] in ("counter", "histogram", "summary") and len(parts) == 2:
        return parts[0], _SUM, parts[1]
    return None


class DirectoryReader:
    """Merges the files of a multiprocess directory into metric families, as
    prometheus_client's ``MultiProcessCollector.merge`` does, caching what does not change.

    Not thread safe: the collector calls it under its own lock.
    """

    def __init__(self) -> None:
        self._files: dict[str, _File] = {}
        self._series: list[_Series] = []
        self._ids: dict[tuple[str, str, str], int] = {}  # (key, kind, pid for `all`) -> id
        self._decoded: dict[str, tuple[str, str, dict[str, str], str]] = {}
        self._layout: list[tuple[_Series, list[Any]]] | None = None

    def read(self, paths: Iterable[str]) -> list[Metric]:
        seen = set()
        totals: list[float | None] = []
        stamps: list[float] = []
        for path in paths:
            kind = _kind(path)
            if kind is None:
                continue
            file = self._file(path, kind)
            if file is None:
                continue
            seen.add(path)
            self._read_new_keys(path, file, kind[0])
            if len(totals) < len(self._series):
                grow = len(self._series) - len(totals)
                totals.extend([None] * grow)
                stamps.extend([0.0] * grow)
            self._add_values(file, totals, stamps)
        for gone in [p for p in self._files if p not in seen]:
            self._files.pop(gone).close()
        return self._families(totals)

    # -- files ------------------------------------------------------------------------------
    def _file(self, path: str, kind: tuple[str, int, str]) -> _File | None:
        """The file's mapping, opened again if the file was replaced (an archive rewritten by
        compaction) or remapped if it has grown; None if it is gone or has no header yet."""
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return None
        file = self._files.get(path)
        if file is not None and file.inode != stat.st_ino:
            self._files.pop(path).close()
            file = None
        if file is None:
            file = _File(stat.st_ino, kind[1], kind[2])
        if stat.st_size < HEADER:  # created on a full directory: nothing in it
            return None
        # Mapped again when the writer has used more than the mapping covers.
        grown = file.mapping is None or _unpack_int(file.mapping, 0)[0] > len(file.mapping)
        if grown and not self._map(path, file, stat.st_size):
            return None
        self._files[path] = file
        return file

    @staticmethod
    def _map(path: str, file: _File, size: int) -> bool:
        try:
            with open(path, "rb") as f:
                # Whole doubles only (files are written in pages; this is for safety).
                mapping = mmap.mmap(f.fileno(), size - size % 8, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # gone, or emptied, since the stat
            return False
        file.close()
        file.mapping = mapping
        file.view = memoryview(mapping).cast("d")
        return True

    # -- keys -------------------------------------------------------------------------------
    def _read_new_keys(self, path: str, file: _File, typ: str) -> None:
        """Decode the entries appended since the last scrape (the header says how far the
        file is used; a writer updates it after the entries, so they are complete)."""
        m = file.mapping
        assert m is not None
        used = min(_unpack_int(m, 0)[0], len(m))  # len: the mapping, not the file
        pos = file.parsed
        if pos >= used or file.broken:
            return
        try:
            while pos < used:
                length = _unpack_int(m, pos)[0]
                start = pos + 4
                value = start + length + (8 - (length + 4) % 8)
                if length <= 0 or value + 16 > used:
                    raise ValueError(f"entry at {pos} runs past the used size {used}")
                key = m[start : start + length].decode("utf-8")
                file.series.append(self._series_id(key, typ, file))
                file.slots.append(value >> 3)
                pos = value + 16
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError) as exc:
            # Never fail a scrape over one damaged file: keep what was read before.
            file.broken = True
            log.warning(
                "inferwatch: cannot read %s past offset %d: %r", os.path.basename(path), pos, exc
            )
        file.parsed = pos

    def _series_id(self, key: str, typ: str, file: _File) -> int:
        pid = file.pid if file.combine == _PER_PID else ""
        ident = (key, typ, pid)
        found = self._ids.get(ident)
        if found is not None:
            return found
        decoded = self._decoded.get(key)
        if decoded is None:
            family, name, labels, help_text = json.loads(key)
            decoded = self._decoded[key] = (family, name, dict(labels), help_text)
        family, name, labels, help_text = decoded
        series = _Series(family, typ, help_text, name, dict(sorted(labels.items())))
        if pid:
            series.labels = dict(sorted({**labels, "pid": pid}.items()))
        if typ == "histogram" and "le" in labels:
            series.le = float(labels["le"])
            series.group = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        self._ids[ident] = len(self._series)
        self._series.append(series)
        self._layout = None  # a new series: the families are laid out again
        return self._ids[ident]

    # -- values -----------------------------------------------------------------------------
    @staticmethod
    def _add_values(file: _File, totals: list[float | None], stamps: list[float]) -> None:
        view = file.view
        assert view is not None
        combine = file.combine
        if combine == _SUM:
            for sid, slot in zip(file.series, file.slots, strict=True):
                total = totals[sid]
                totals[sid] = view[slot] if total is None else total + view[slot]
        elif combine == _PER_PID:
            for sid, slot in zip(file.series, file.slots, strict=True):
                totals[sid] = view[slot]
        elif combine == _RECENT:
            for sid, slot in zip(file.series, file.slots, strict=True):
                stamp = view[slot + 1]
                if totals[sid] is None or stamp > stamps[sid]:
                    totals[sid], stamps[sid] = view[slot], stamp
        else:
            pick = min if combine == _MIN else max
            for sid, slot in zip(file.series, file.slots, strict=True):
                total = totals[sid]
                totals[sid] = view[slot] if total is None else pick(total, view[slot])

    # -- families ---------------------------------------------------------------------------
    def _families(self, totals: list[float | None]) -> list[Metric]:
        families = []
        for head, parts in self._laid_out():
            metric = Metric(head.family, head.help, head.typ)
            add = metric.add_sample
            if head.typ != "histogram":
                for series_id in parts:
                    value = totals[series_id]
                    if value is not None:
                        series = self._series[series_id]
                        add(series.name, series.labels, value)
            else:
                for count_labels, buckets, others in parts:
                    cumulative, any_bucket = 0.0, False
                    for series_id in buckets:
                        value = totals[series_id]
                        if value is not None:
                            cumulative += value
                            any_bucket = True
                            series = self._series[series_id]
                            add(series.name, series.labels, cumulative)
                    if any_bucket:
                        add(head.family + "_count", count_labels, cumulative)
                    for series_id in others:
                        value = totals[series_id]
                        if value is not None:
                            series = self._series[series_id]
                            add(series.name, series.labels, value)
            if metric.samples:
                families.append(metric)
        return families

    def _laid_out(self) -> list[tuple[_Series, list[Any]]]:
        """Families in the order their first series appeared; a histogram's series grouped
        by labels, buckets sorted by bound, then its other samples (``_sum``)."""
        if self._layout is not None:
            return self._layout
        by_family: dict[tuple[str, str], tuple[_Series, list[int]]] = {}
        for series_id, series in enumerate(self._series):
            entry = by_family.setdefault((series.family, series.typ), (series, []))
            entry[1].append(series_id)
        layout: list[tuple[_Series, list[Any]]] = []
        for head, ids in by_family.values():
            if head.typ != "histogram":
                layout.append((head, ids))
                continue
            groups: dict[
                tuple[tuple[str, str], ...], tuple[dict[str, str], list[int], list[int]]
            ] = {}
            for series_id in ids:
                series = self._series[series_id]
                group = series.group if series.le is not None else tuple(series.labels.items())
                grouped = groups.setdefault(group, (dict(group), [], []))
                (grouped[1] if series.le is not None else grouped[2]).append(series_id)
            for _, buckets, _ in groups.values():
                buckets.sort(key=lambda i: self._series[i].le)  # type: ignore[arg-type,return-value]
            layout.append((head, list(groups.values())))
        self._layout = layout
        return layout
