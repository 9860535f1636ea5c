"""Recorded alerts: bounded in memory, de-duplicated, optionally kept in a JSON-lines file.

One record per alert per distinct notification. Alertmanager repeats a notification every
``repeat_interval`` and re-sends it after a failed delivery; such a repeat (same receiver,
fingerprint, status and startsAt) is counted on the record it repeats instead of stored again.
Only new records go to the file, so a restart keeps every distinct notification, and the
reloaded records keep de-duplicating what Alertmanager re-sends afterwards. Once the file
holds more than twice ``max_records`` lines it is rewritten with the records kept, so it
stays bounded on disk too, however long the sink runs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from inferwatch.alertsink.models import WebhookPayload

log = logging.getLogger("inferwatch.alertsink")

Record = dict[str, Any]
Key = tuple[str, str, str, str]  # receiver, fingerprint, status, starts_at

DEFAULT_MAX_RECORDS = 10_000


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _key(record: Record) -> Key:
    return (record["receiver"], record["fingerprint"], record["status"], record["starts_at"])


def records_of(payload: WebhookPayload, endpoint: str | None, received_at: str) -> list[Record]:
    """The records one notification yields, one per alert."""
    return [
        {
            "received_at": received_at,
            "endpoint": endpoint,
            "receiver": payload.receiver,
            "group_key": payload.groupKey,
            "status": alert.status,
            "alertname": alert.labels.get("alertname", ""),
            "fingerprint": alert.fingerprint,
            "starts_at": alert.startsAt,
            "ends_at": alert.endsAt,
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "generator_url": alert.generatorURL,
        }
        for alert in payload.alerts
    ]


def _appender(path: Path) -> IO[str]:
    return open(path, "a", encoding="utf-8")  # kept open until close()


class NotificationStore:
    """Thread-safe; the oldest records are dropped beyond ``max_records``."""

    def __init__(self, max_records: int = DEFAULT_MAX_RECORDS, path: Path | None = None) -> None:
        if max_records < 1:
            raise ValueError(f"max_records must be at least 1, got {max_records}")
        self.max_records = max_records
        self.path = path
        self._records: OrderedDict[Key, Record] = OrderedDict()
        self._lock = threading.Lock()
        self._next_id = 1
        self._file: IO[str] | None = None
        self._lines = 0  # in the file: kept records, and those dropped since it was written
        if path is not None:
            self._file = self._open(path)

    def add(self, payload: WebhookPayload, endpoint: str | None = None) -> tuple[list[Record], int]:
        """Record a notification: (the new records, how many alerts were repeats)."""
        received_at = _now()
        added: list[Record] = []
        duplicates = 0
        with self._lock:
            for record in records_of(payload, endpoint, received_at):
                seen = self._records.get(_key(record))
                if seen is not None:
                    seen["repeats"] += 1
                    seen["last_received_at"] = received_at
                    duplicates += 1
                    continue
                record = {"id": self._next_id, **record, "repeats": 0}
                record["last_received_at"] = received_at
                self._next_id += 1
                self._insert(record)
                added.append(dict(record))
            self._append(added)
        return added, duplicates

    def query(
        self,
        *,
        receiver: str | None = None,
        alertname: str | None = None,
        status: str | None = None,
    ) -> list[Record]:
        """Matching records, oldest first (copies: the caller may keep them)."""
        wanted = {"receiver": receiver, "alertname": alertname, "status": status}
        with self._lock:
            return [
                {**r, "labels": dict(r["labels"]), "annotations": dict(r["annotations"])}
                for r in self._records.values()
                if all(value is None or r[field] == value for field, value in wanted.items())
            ]

    def clear(self) -> int:
        """Forget every record, on disk too: a deliberate clear must survive a restart."""
        with self._lock:
            count = len(self._records)
            self._records.clear()
            if self._file is not None:
                self._file.truncate(0)
                self._file.flush()
                os.fsync(self._file.fileno())
                self._lines = 0
            return count

    def __len__(self) -> int:
        return len(self._records)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _insert(self, record: Record) -> None:
        self._records[_key(record)] = record
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)

    def _append(self, records: list[Record]) -> None:
        if self._file is None or self.path is None or not records:
            return
        self._file.write("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())  # a notification acknowledged is a notification kept
        self._lines += len(records)
        if self._lines > 2 * self.max_records:
            self._file.close()
            self._rewrite(self.path)
            self._file = _appender(self.path)

    def _open(self, path: Path) -> IO[str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = text.splitlines()
        bad = 0
        for line in lines:
            try:
                record = json.loads(line)
                self._next_id = max(self._next_id, int(record["id"]) + 1)
                record.setdefault("repeats", 0)
                self._insert(record)
            except (ValueError, KeyError, TypeError):
                bad += 1  # e.g. a line cut short by a crash mid-write
        if bad:
            log.warning("alert sink: skipped %d unreadable line(s) in %s", bad, path)
        torn = bool(text) and not text.endswith("\n")  # the next append would join it
        self._lines = len(lines)
        if bad or torn or self._lines > 2 * self.max_records:
            self._rewrite(path)
        return _appender(path)

    def _rewrite(self, path: Path) -> None:
        """Replace the file with the records kept, so it neither grows forever nor keeps a
        torn line. Atomic: a crash leaves the old file or the new one, never half of one."""
        temporary = path.with_name(path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(r, sort_keys=True) + "\n" for r in self._records.values())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        self._lines = len(self._records)
