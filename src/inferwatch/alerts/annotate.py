"""Annotation text shared by every alert: value formatting per unit, runbook and dashboard URLs."""

from __future__ import annotations

from fractions import Fraction

from inferwatch.alerts import units
from inferwatch.alerts.thresholds import Thresholds

# How ``$value`` is printed for each kind of signal (Go template pipelines).
VALUE = {
    "duration": "{{ $value | humanizeDuration }}",
    "ratio": "{{ $value | humanizePercentage }}",
    "celsius": '{{ $value | printf "%.1f" }}°C',
    "byte_rate": "{{ $value | humanize1024 }}B/s",
    "count": '{{ $value | printf "%.0f" }}',
}
SERVICE_LABEL = "{{ $labels.job }}"  # a `service` label for inhibition, empty when job is


def threshold_text(kind: str, value: Fraction) -> str:
    if kind == "duration":
        return units.format_duration(value)
    if kind == "ratio":
        return units.format_percent(value)
    if kind == "celsius":
        return f"{units.decimal_text(value)}°C"
    if kind == "byte_rate":
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if value >= size and (value / size).denominator == 1:
                return f"{value // size}{unit}/s"
        return f"{units.decimal_text(value)}B/s"
    return units.decimal_text(value)


def runbook_url(thresholds: Thresholds, alert: str) -> str:
    return f"{thresholds.settings.docs_base_url}/alerts/runbooks/{alert}.md"


def dashboard_url(thresholds: Thresholds, uid: str) -> str:
    return f"{thresholds.settings.grafana_base_url}/d/{uid}"


def rule_annotations(
    thresholds: Thresholds, alert: str, uid: str, summary: str, description: str
) -> dict[str, str]:
    found = {
        "summary": summary,
        "description": description,
        "runbook_url": runbook_url(thresholds, alert),
    }
    # A deployment without Grafana (grafana_base_url "") gets no link rather than a dead one.
    if thresholds.settings.grafana_base_url:
        found["dashboard_url"] = dashboard_url(thresholds, uid)
    return found
