"""Faults and recoveries in a window: how long the service took to recover, MTTR-style.

Two views. The error rate: a fault is a run of scrapes of a target whose requests failed
more often than the ``api_error_rate`` warning level, scrape by scrape: each scrape of the
target's request counters says how many requests ended since the previous one and how many
of them failed (a 5xx status or an ``error_type``). A fault begins within the interval
before its first such scrape and ends within the interval before its last one (the one
after it is back at or below the level), so the time from its first to its last faulty
scrape is its duration to within one scrape interval, without a bias either way; a fault
shorter than an interval reads 0 s. One still under way at the window's end is reported as
not recovered. Scrapes that counted no request say nothing either way and are skipped: a
service has recovered once requests succeed again. A rolling ratio (the recorded 5m one the
alerts read) would add its window to every fault's duration. Faults of the instances of one
job that overlap are one fault of the job.

The dependencies: each circuit breaker that closed again in the window recorded how long it
had been open (``inferwatch_upstream_circuit_recovery_seconds``), whose mean over the window
is computed in :mod:`.collect`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def episodes(samples: Iterable[tuple[float, float]], threshold: float) -> list[dict[str, Any]]:
    """Fault episodes in ``(time, value)`` samples: value above ``threshold``."""
    found: list[dict[str, Any]] = []
    start: float | None = None
    last = None
    for at, value in samples:
        last = at
        faulty = value > threshold
        if faulty and start is None:
            start = at
        elif not faulty and start is not None:
            found.append({"start": start, "end": at, "seconds": at - start, "recovered": True})
            start = None
    if start is not None and last is not None:
        found.append({"start": start, "end": last, "seconds": last - start, "recovered": False})
    return found


def mean_recovery(found: Iterable[dict[str, Any]]) -> float | None:
    """Mean duration of the episodes that ended within the window (None: none did)."""
    ended = [e["seconds"] for e in found if e["recovered"]]
    return sum(ended) / len(ended) if ended else None


def failed_shares(
    scraped: Mapping[float, float], failed: Mapping[float, float], total: Mapping[float, float]
) -> list[tuple[float, float]]:
    """Per scrape of one target, ``(scrape time, share of failed requests)`` among the
    requests that ended since its previous scrape.

    The inputs are one range query's steps (step time -> value) of the target's latest
    scrape time and its cumulative failed and total request counts. Steps that saw no new
    scrape repeat the previous one and are skipped, so the times are the scrapes' own,
    whatever the step. A failed count absent at a step is 0 (no failure counted yet); a
    count that went down (a restart) starts anew, and its first scrape is not judged.
    """
    out: list[tuple[float, float]] = []
    last_scrape: float | None = None
    before: tuple[float, float] | None = None  # (failed, total) at the previous scrape
    for step in sorted(scraped):
        at = scraped[step]
        if at == last_scrape or step not in total:
            continue
        last_scrape = at
        now = (failed.get(step, 0.0), total[step])
        if before is not None:
            new_failed, new_total = now[0] - before[0], now[1] - before[1]
            if new_failed < 0 or new_total < 0:
                before = now  # counters reset: nothing to compare with
                continue
            if new_total == 0:
                continue  # no request ended: keep comparing with the last scrape that had some
            out.append((at, new_failed / new_total))
        before = now
    return out


def scrape_faults(shares: Iterable[tuple[float, float]], threshold: float) -> list[dict[str, Any]]:
    """Faults in :func:`failed_shares`' output: runs of scrapes above ``threshold``, from the
    first to the last of them; ``recovered_at`` is the first scrape back at or below it."""
    found: list[dict[str, Any]] = []
    first: float | None = None
    last = 0.0
    for at, share in shares:
        if share > threshold:
            if first is None:
                first = at
            last = at
        elif first is not None:
            found.append(_fault(first, last, at))
            first = None
    if first is not None:
        found.append(_fault(first, last, None))
    return found


def _fault(start: float, end: float, recovered_at: float | None) -> dict[str, Any]:
    return {
        "start": start,
        "end": end,
        "seconds": end - start,
        "recovered": recovered_at is not None,
        "recovered_at": recovered_at,
    }


def merge(found: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Overlapping faults (of a job's instances) as one each: from the first start to the
    last end, recovered when the one that ended last recovered (all of them, if several)."""
    merged: list[dict[str, Any]] = []
    for e in sorted(found, key=lambda x: (x["start"], x["end"])):
        if not merged or e["start"] > merged[-1]["end"]:
            merged.append(dict(e))
            continue
        last = merged[-1]
        if e["end"] > last["end"]:
            last.update(end=e["end"], recovered=e["recovered"], recovered_at=e["recovered_at"])
        elif e["end"] == last["end"]:
            both = last["recovered"] and e["recovered"]
            at = max(last["recovered_at"], e["recovered_at"]) if both else None
            last.update(recovered=both, recovered_at=at)
        last["seconds"] = last["end"] - last["start"]
    return merged
