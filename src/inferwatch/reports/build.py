"""Assemble a report: figures, bottlenecks, readiness check, charts, calibration, files."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from inferwatch.alerts.thresholds import Levels, Thresholds
from inferwatch.reports import bottleneck, calibrate, charts, cost, criteria, output
from inferwatch.reports.collect import collect
from inferwatch.reports.query import Window, job_regex, monitored_jobs
from inferwatch.stack.prometheus_config import JOB_EXPORTER


def fault_ratio(thresholds: Thresholds) -> float | None:
    """The error ratio above which the window counts as faulty: APIHighErrorRate's warning."""
    levels = thresholds.signals.get("api_error_rate")
    warning = levels.warning if isinstance(levels, Levels) else None
    return None if warning is None else float(warning)


def build_report(args: argparse.Namespace, thresholds: Thresholds) -> tuple[dict, list[Path]]:
    window = chart_window = Window(args.start, args.end, args.job or ".*")
    if args.job is None:  # the monitored services: every job scraped but inferwatch's own
        from inferwatch.stack.prometheus_api import Prometheus

        jobs = monitored_jobs(Prometheus(args.prometheus), args.start, args.end)
        window = Window(args.start, args.end, job_regex(jobs))
        # The dashboards select the exporter's host and GPU panels by $job as well.
        chart_window = Window(args.start, args.end, job_regex([*jobs, JOB_EXPORTER]))
    figures = collect(
        args.prometheus, window, quiet=args.quiet, fault_ratio=fault_ratio(thresholds)
    )
    quantities = figures["cost"]
    report: dict[str, Any] = {
        "figures": figures,
        "cost": cost.price(quantities["hours"], quantities["jobs"], thresholds.cost),
        "bottlenecks": bottleneck.rank(figures, thresholds),
        "check": [
            {**dataclasses.asdict(r), "line": r.line()} for r in criteria.check(figures, thresholds)
        ],
        "charts": [],
    }
    if "html" in args.format and not args.no_charts:
        report["charts"] = charts.render(
            args.prometheus, chart_window, thresholds, args.out, quiet=args.quiet
        )
        report["section_charts"] = charts.sections(figures, args.out)
    if args.calibrate:
        report["calibration"] = calibrate.write_overlay(figures, args.calibrate)
    return report, output.write(report, args.out, args.format)
