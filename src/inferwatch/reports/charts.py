"""The report's charts: the dashboards themselves, drawn over the window by the same
renderer and from the same panel definitions as Grafana shows them."""

from __future__ import annotations

import sys
from pathlib import Path

from inferwatch.alerts.thresholds import Thresholds
from inferwatch.reports.query import Window

CHARTS = ("overview", "models", "resources", "pools", "streaming")
CHART_DIR = "charts"


def render(
    prometheus_url: str,
    window: Window,
    thresholds: Thresholds,
    out_dir: Path,
    names: tuple[str, ...] = CHARTS,
    quiet: bool = False,
) -> list[str]:
    """Render each dashboard to ``out_dir/charts/<name>.png``; the relative paths."""
    from inferwatch.dashboards import build_all
    from inferwatch.dashboards.render import render_dashboard

    specs = build_all(thresholds)
    variables = {} if window.job == ".*" else {"job": window.job}
    paths = []
    for i, name in enumerate(names, 1):
        if not quiet:
            print(f"report: chart {i}/{len(names)}: {name}", file=sys.stderr)
        relative = f"{CHART_DIR}/{name}.png"
        render_dashboard(
            specs[name], prometheus_url, window.start, window.end, out_dir / relative, variables
        )
        paths.append(relative)
    return paths
