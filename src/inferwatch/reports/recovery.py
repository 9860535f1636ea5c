"""Faults and recoveries in a window: how long the service took to recover, MTTR-style.

Two views. The error rate: a fault is a stretch where the recorded 5m error ratio of a job
(``job:http_server_request_errors:ratio_rate5m``) stays above the ``api_error_rate``
warning level; it lasts from the first sample above to the first sample back at or below
it (so it includes the 5m window's lag, as an alert would see it), and one still under way
at the window's end is reported as not recovered. The dependencies: each circuit breaker
that closed again in the window recorded how long it had been open
(``inferwatch_upstream_circuit_recovery_seconds``), whose mean over the window is computed in
:mod:`.collect`.
"""

from __future__ import annotations

from collections.abc import Iterable
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
