"""Multi-window, multi-burn-rate SLO alerts for availability and latency.

A window pair fires when both its long and short window burn the error budget faster than
``factor`` times the sustainable rate: the long window proves significance, the short one
that it is still happening (so the alert resets quickly). The threshold is
``factor * (1 - objective)``, computed as a fraction so it renders as ``0.072``, not
``0.07200000000000001``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from inferwatch.alerts import promql
from inferwatch.alerts.annotate import SERVICE_LABEL, rule_annotations
from inferwatch.alerts.runbook_data import Page
from inferwatch.alerts.thresholds import BurnRate, Thresholds
from inferwatch.alerts.units import format_percent


@dataclass(frozen=True)
class Sli:
    name: str  # label value `slo`
    alert: str
    ratio: str  # recording rule name without the window suffix
    what: str
    runbook: Page  # what a burning budget means, its causes and first checks


SLIS = (
    Sli(
        "availability",
        "APIAvailabilityBudgetBurn",
        "job:http_server_request_errors:ratio_rate",
        "error ratio",
        runbook=Page(
            "The service fails requests (5xx, exceptions, streams broken halfway, clients that "
            "left) fast enough to exhaust its availability error budget well before the SLO "
            "window ends. Critical: the budget goes in hours or days; "
            "warning: in weeks.",
            (
                "An ongoing incident (see APIHighErrorRate for the route).",
                "A steady trickle of failures from a dependency or a bad release.",
            ),
            (
                "Find the routes with the highest "
                "`job_route:http_server_request_errors:ratio_rate5m`.",
                "Roll back recent changes if the burn started with a deployment.",
            ),
        ),
    ),
    Sli(
        "latency",
        "APILatencyBudgetBurn",
        "job:http_server_request_slow:ratio_rate",
        "slow-request ratio",
        runbook=Page(
            "Too many requests are slower than the latency SLO threshold, fast enough to exhaust "
            "the latency error budget before the SLO window ends.",
            (
                "Capacity: queueing for GPUs during traffic peaks.",
                "A slow dependency or a model reload.",
            ),
            (
                "Find the routes with the highest P95/P99 in the overview dashboard.",
                "Check queue depth, GPU saturation and pool usage.",
            ),
        ),
    ),
)


def objective(thresholds: Thresholds, sli: Sli) -> Fraction:
    slo = thresholds.slo
    return slo.availability if sli.name == "availability" else slo.latency


def budget(thresholds: Thresholds, sli: Sli) -> Fraction:
    return 1 - objective(thresholds, sli)


def burn_threshold(thresholds: Thresholds, sli: Sli, rate: BurnRate) -> Fraction:
    return rate.factor * budget(thresholds, sli)


def expression(thresholds: Thresholds, sli: Sli, rate: BurnRate) -> str:
    limit = promql.number(burn_threshold(thresholds, sli, rate))
    long, short = promql.window(rate.long), promql.window(rate.short)
    return f"{sli.ratio}{long} > {limit} and {sli.ratio}{short} > {limit}"


def _description(thresholds: Thresholds, sli: Sli, rate: BurnRate) -> str:
    slo = thresholds.slo
    goal = format_percent(objective(thresholds, sli))
    if sli.name == "latency":
        goal += f" of requests under {promql.window(slo.latency_threshold)}"
    return (
        f"The {sli.what} over {promql.window(rate.long)} is {{{{ $value | humanizePercentage }}}}"
        f" (and over {promql.window(rate.short)} too), above "
        f"{format_percent(burn_threshold(thresholds, sli, rate))}: the "
        f"{promql.window(slo.window)} error budget of the {goal} objective is burning "
        f"{promql.number(rate.factor)}x faster than sustainable."
    )


def labels(sli: Sli, rate: BurnRate) -> dict[str, str]:
    return {
        "severity": rate.severity,
        "service": SERVICE_LABEL,
        "slo": sli.name,
        "long_window": promql.window(rate.long),
        "short_window": promql.window(rate.short),
    }


def rules(thresholds: Thresholds) -> list[dict[str, Any]]:
    result = []
    for sli in SLIS:
        for rate in thresholds.slo.burn_rates:
            result.append(
                {
                    "alert": sli.alert,
                    "expr": expression(thresholds, sli, rate),
                    "for": promql.window(rate.for_),
                    "labels": labels(sli, rate),
                    "annotations": rule_annotations(
                        thresholds,
                        sli.alert,
                        "inferwatch-overview",
                        f"{{{{ $labels.job }}}} is burning its {sli.name} error budget",
                        _description(thresholds, sli, rate),
                    ),
                }
            )
    return result
