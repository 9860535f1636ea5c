"""What a window's resources cost at the thresholds file's prices, per job and per 1000 jobs.

The quantities are resource-hours measured over the window (:func:`.collect.cost_quantities`):
CPU core-hours the service's own processes used (the exact increase of
``process_cpu_seconds_total``), GiB-hours of their resident memory, GPU-hours of the GPUs the
exporter reports and instance-hours of the service's scraped processes; the same quantities
the cost recording rules price over an hour. The arithmetic is exact (fractions of the
queried values); figures are rounded only when a table shows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from inferwatch.alerts.thresholds import Cost

PER = 1000  # the report's "per 1000 jobs"


def price(quantities: Mapping[str, float | None], jobs: float, cost: Cost) -> dict[str, Any]:
    """Cost by resource, in total, per job and per 1000 jobs (None without jobs)."""
    by_resource: dict[str, dict[str, float]] = {}
    total = Fraction(0)
    for resource, per_hour in cost.priced().items():
        hours = quantities.get(resource)
        if hours is None:
            continue  # not measured in this window (no such series): not priced as zero
        amount = Fraction(hours) * per_hour
        total += amount
        by_resource[resource] = {
            "hours": hours,
            "price_per_hour": float(per_hour),
            "cost": float(amount),
        }
    per_job = total / Fraction(jobs) if jobs > 0 else None
    return {
        "currency": cost.currency,
        "by_resource": by_resource,
        "total": float(total),
        "jobs": jobs,
        "per_job": float(per_job) if per_job is not None else None,
        f"per_{PER}_jobs": float(per_job * PER) if per_job is not None else None,
    }
