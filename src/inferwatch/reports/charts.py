"""The report's charts: the dashboards themselves, drawn over the window by the same
renderer and from the same panel definitions as Grafana shows them; and the Trends and
Scalability sections' own, drawn from the report's figures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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


# --- the Trends and Scalability sections' own charts -------------------------------------

# unit -> (divisor, axis unit, slope unit)
_SCALE = {
    "bytes": (2**20, "MiB", "MiB/h"),
    "ratio": (0.01, "%", "pp/h"),  # percentage points per hour
    "cores": (1.0, "cores", "cores/h"),
}
_LINE, _FIT, _BAND = "#73BF69", "#FF9830", "#FF983033"


def _figure(rows: int, cols: int = 1) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    from inferwatch.dashboards.render import BG, DPI, PANEL_BG, TEXT

    fig, axes = plt.subplots(
        rows, cols, figsize=(10.24 * cols, 2.6 * rows), dpi=DPI,
        facecolor=BG, squeeze=False,
    )  # fmt: skip
    flat = [ax for row in axes for ax in row]
    for ax in flat:
        ax.set_facecolor(PANEL_BG)
        ax.tick_params(colors=TEXT, labelsize=8)
        for side in ax.spines.values():
            side.set_color("#2c3235")
        ax.grid(color="#2c3235", linewidth=0.5)
    return fig, flat


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from inferwatch.dashboards.render import BG

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, facecolor=BG)
    plt.close(fig)


def trend_chart(trends: dict[str, Any], path: Path) -> bool:
    """Each trend's samples, its fitted line and the line's 95% confidence band, against
    minutes into the window; False (nothing drawn) without a trend."""
    from inferwatch.dashboards.render import PANEL_BG, TEXT
    from inferwatch.reports.trends import Fit

    series = trends.get("series", [])
    if not series:
        return False
    fig, axes = _figure(len(series))
    for ax, line in zip(axes, series, strict=True):
        scale, unit, rate = _SCALE.get(line["unit"], (1.0, line["unit"], f"{line['unit']}/h"))
        fit = Fit(**line["fit"])
        xs = [t for t, _ in line["points"]]
        origin = xs[0]
        minutes = [(t - origin) / 60 for t in xs]
        ax.plot(minutes, [v / scale for _, v in line["points"]], color=_LINE, linewidth=1,
                label="samples")  # fmt: skip
        ax.plot(minutes, [fit.at(t) / scale for t in xs], color=_FIT, linewidth=1.2,
                label="least-squares line")  # fmt: skip
        bands = [fit.band(t) for t in xs]
        ax.fill_between(minutes, [lo / scale for lo, _ in bands],
                        [hi / scale for _, hi in bands], color=_BAND, label="95% band")  # fmt: skip
        low, high = line["ci95_per_hour"]
        ax.set_title(
            f"{line['resource']} {line['subject']}: {line['slope_per_hour'] / scale:+.6g} "
            f"{rate} (95%: {low / scale:+.6g} to {high / scale:+.6g})",
            color=TEXT, fontsize=9, loc="left",
        )  # fmt: skip
        ax.set_ylabel(unit, color=TEXT, fontsize=8)
        ax.set_xlabel("minutes into the window", color=TEXT, fontsize=8)
        ax.legend(fontsize=7, loc="upper left", facecolor=PANEL_BG, labelcolor=TEXT)
    _save(fig, path)
    return True


def scalability_chart(scalability: dict[str, Any], path: Path) -> bool:
    """Throughput and P95 latency against concurrency and against batch size (one panel
    each, throughput on the left axis); False without any row."""
    from inferwatch.dashboards.render import TEXT

    panels = [
        (key, rows, x_label, rate, rate_label)
        for key, x_label, rate, rate_label in (
            ("concurrency", "mean requests in flight", "requests", "req/s"),
            ("batch_size", "mean batch size", "items", "inputs/s"),
        )
        if (rows := scalability.get(key))
    ]
    if not panels:
        return False
    fig, axes = _figure(len(panels))
    for ax, (key, rows, x_label, rate, rate_label) in zip(axes, panels, strict=True):
        level = "batch_size_avg" if key == "batch_size" else "level_avg"
        xs = [r[level] for r in rows]
        ax.plot(xs, [r["per_second"][rate] for r in rows], "o-", color=_LINE)
        ax.set_xlabel(x_label, color=TEXT, fontsize=8)
        ax.set_ylabel(rate_label, color=_LINE, fontsize=8)
        right = ax.twinx()
        p95 = [r["latency_seconds"].get("p95") for r in rows]
        right.plot(xs, [None if v is None else v * 1000 for v in p95], "s--", color=_FIT)
        right.set_ylabel("P95 ms", color=_FIT, fontsize=8)
        right.tick_params(colors=TEXT, labelsize=8)
        ax.set_title(f"Throughput and P95 latency by {key.replace('_', ' ')}", color=TEXT,
                     fontsize=9, loc="left")  # fmt: skip
    _save(fig, path)
    return True


def sections(figures: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """The Trends and Scalability charts under ``out_dir/charts/``; section -> path."""
    drawn = {}
    for name, draw, found in (
        ("trends", trend_chart, figures.get("trends", {})),
        ("scalability", scalability_chart, figures.get("scalability", {})),
    ):
        relative = f"{CHART_DIR}/{name}.png"
        if draw(found, out_dir / relative):
            drawn[name] = relative
    return drawn
