"""Draw a dashboard as a PNG from live Prometheus data, the way Grafana lays it out.

Grafana itself is not needed: the renderer reads the dashboard's own JSON (panel grid,
titles, units, threshold colours, queries), runs every query through Prometheus's HTTP API
over a time window and draws the panels with matplotlib. It is used for the README pictures
and for load-test reports::

    render_dashboard(spec, "http://127.0.0.1:9090", start, end, "overview.png",
                     variables={"job": "demo"})
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferwatch.dashboards.model import DashboardSpec
from inferwatch.dashboards.prometheus import substitute
from inferwatch.dashboards.units import format_value
from inferwatch.stack.prometheus_api import Prometheus, QueryError, Series

COL_PX = 64  # Grafana's 24 columns on a ~1536 px wide screen
ROW_PX = 30  # one grid unit of height
HEADER_PX = 56
DPI = 100
BG, PANEL_BG, BORDER = "#111217", "#181b1f", "#2c3235"
TEXT, MUTED = "#ccccdc", "#8e8e8e"
PALETTE = (
    "#73BF69",
    "#F2CC0C",
    "#8AB8FF",
    "#FF780A",
    "#F2495C",
    "#5794F2",
    "#B877D9",
    "#705DA0",
    "#37872D",
    "#FADE2A",
    "#447EBC",
    "#C15C17",
)
MAX_POINTS = 240
LEGEND_MAX = 9
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# A series selector of a (substituted) expression: a metric name, its optional matchers,
# and whether a "(" follows (then it is a function).
_SELECTOR = re.compile(
    r'(?<![\w.:])([a-zA-Z_:][\w:]*)\s*(\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\})?(\s*\()?'
)
# What else reads like a name, in one left-to-right pass: matchers are kept whole (their
# values may hold anything), and strings, range durations and grouping label lists are
# blanked out.
_NOISE = re.compile(
    r'(?P<matchers>\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\})'
    r'|"(?:[^"\\]|\\.)*"'
    r"|\[[^\]]*\]"
    r"|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
)
# PromQL's operators, modifiers and aggregations (an aggregation may precede `by`).
_NOT_METRICS = frozenset(
    {
        *("and", "or", "unless", "bool", "offset", "inf", "nan"),
        *("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"),
        *("bottomk", "topk", "quantile", "limitk", "limit_ratio"),
    }
)


@dataclass(frozen=True)
class Line:
    name: str
    times: list[float]
    values: list[float]
    ref: str


def _legend(template: str, labels: Mapping[str, str]) -> str:
    if template:
        return _LEGEND.sub(lambda m: labels.get(m.group(1), ""), template).strip() or "value"
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "value"


def _lines(result: list[Series], legend: str, ref: str) -> list[Line]:
    lines = []
    for series in result:
        points = series.get("values") or ([series["value"]] if "value" in series else [])
        times = [float(t) for t, _ in points]
        values = [float(v) for _, v in points]
        lines.append(Line(_legend(legend, series["metric"]), times, values, ref))
    return sorted(lines, key=lambda line: line.name)


def _step_color(steps: list[dict[str, Any]], value: float) -> str:
    color = steps[0]["color"] if steps else PALETTE[0]
    for step in steps[1:]:
        if step["value"] is not None and value >= step["value"]:
            color = step["color"]
    return color


def _ref_steps(panel: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for override in panel["fieldConfig"].get("overrides", []):
        if override["matcher"]["id"] == "byFrameRefID":
            for prop in override["properties"]:
                if prop["id"] == "thresholds":
                    found[override["matcher"]["options"]] = prop["value"]["steps"]
    return found


class _Renderer:
    def __init__(
        self, prometheus: Prometheus, start: float, end: float, variables: Mapping[str, str]
    ):
        self.prometheus = prometheus
        self.start, self.end = start, end
        self.step = max(1.0, math.ceil((end - start) / MAX_POINTS))
        self.variables = variables
        self._present: dict[str, bool] = {}

    def why_empty(self, panel: dict[str, Any]) -> str | None:
        """Why ``panel`` drew nothing, where the window shows it: the chosen job scraped
        nothing, or a series its queries read has no sample. ``None`` when every series is
        there (the queries then filter them all out)."""
        job = self.variables.get("job")
        scraped = f'up{{job=~"{job}"}}' if job is not None else "up"
        if not self._has_series(scraped):
            whose = f' for job=~"{job}"' if job is not None else ""
            return f"Nothing scraped{whose} in this window."
        missing: list[str] = []
        for target in panel["targets"]:
            for name, selector in _selectors(substitute(target["expr"], self.variables)):
                if name not in missing and not self._has_series(selector):
                    missing.append(name)
        if not missing:
            return None
        return f"No series of {', '.join(missing)} in this window."

    def _has_series(self, selector: str) -> bool:
        """Whether ``selector`` has a sample in the window (each asked once per render)."""
        if selector not in self._present:
            window = max(1, math.ceil(self.end - self.start))
            expr = f"count(last_over_time({selector}[{window}s]))"
            try:
                self._present[selector] = bool(self.prometheus.query(expr, at=self.end))
            except QueryError:
                self._present[selector] = True  # no reason rather than a wrong one
        return self._present[selector]

    def fetch(self, panel: dict[str, Any]) -> tuple[list[Line], str | None]:
        lines: list[Line] = []
        for target in panel["targets"]:
            expr = substitute(target["expr"], self.variables)
            try:
                if target.get("instant"):
                    result = self.prometheus.query(expr, at=self.end)
                else:
                    result = self.prometheus.query_range(expr, self.start, self.end, self.step)
            except QueryError as exc:
                return [], f"query error: {exc}"
            lines += _lines(result, target.get("legendFormat", ""), target["refId"])
        return lines, None

    # --- panel kinds -----------------------------------------------------------------------

    def timeseries(self, ax: Any, panel: dict[str, Any], lines: list[Line]) -> None:
        import matplotlib.dates as mdates

        defaults = panel["fieldConfig"]["defaults"]
        unit = defaults.get("unit", "short")
        for i, line in enumerate(lines[: len(PALETTE) * 2]):
            times = [_datetime(t) for t in line.times]
            ax.plot(times, line.values, color=PALETTE[i % len(PALETTE)], lw=1.4, label=line.name)
        low, high = defaults.get("min"), defaults.get("max")
        if low is not None:
            ax.set_ylim(bottom=low)
        seen = max((v for ln in lines for v in ln.values if math.isfinite(v)), default=0.0)
        if high is not None and seen >= 0.5 * high:  # Grafana pins a max the data gets near
            ax.set_ylim(top=high)
        # Like Grafana, threshold lines do not stretch the axis: those off the scale are
        # simply not drawn, so a quiet series is not flattened against a far-away limit.
        style = defaults.get("custom", {}).get("thresholdsStyle", {})
        if style.get("mode", "off") != "off":
            bottom, top = ax.get_ylim()
            for step in defaults["thresholds"]["steps"][1:]:
                if bottom <= step["value"] <= top:
                    ax.axhline(step["value"], color=step["color"], lw=1.2, ls=(0, (4, 3)))
        ax.set_xlim(_datetime(self.start), _datetime(self.end))
        short = self.end - self.start <= 900
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if short else "%H:%M"))
        ax.yaxis.set_major_formatter(_formatter(unit))
        ax.tick_params(colors=MUTED, labelsize=7)
        ax.grid(color=BORDER, lw=0.6)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if lines:
            handles, labels = ax.get_legend_handles_labels()
            shown = LEGEND_MAX if len(lines) > LEGEND_MAX else len(lines)
            if shown < len(lines):
                labels[shown - 1] = f"+{len(lines) - shown + 1} more"
            ax.legend(
                handles[:shown],
                labels[:shown],
                loc="upper left",
                fontsize=6,
                frameon=False,
                labelcolor=TEXT,
                ncol=3 if shown > 6 else 1,
                handlelength=1.2,
            )

    def stat(self, ax: Any, panel: dict[str, Any], lines: list[Line]) -> None:
        defaults = panel["fieldConfig"]["defaults"]
        line = lines[0]
        values = [v for v in line.values if not math.isnan(v)]
        if not values:
            _no_data(ax, panel)
            return
        color = _step_color(defaults["thresholds"]["steps"], values[-1])
        ax.fill_between(range(len(values)), values, color=color, alpha=0.15, lw=0)
        ax.plot(range(len(values)), values, color=color, lw=1, alpha=0.6)
        ax.set_ylim(min(0, min(values)), max(values) * 1.8 if max(values) > 0 else 1)
        ax.set_axis_off()
        ax.text(
            0.5,
            0.55,
            format_value(values[-1], defaults.get("unit", "short")),
            color=color,
            fontsize=20,
            ha="center",
            va="center",
            weight="bold",
            transform=ax.transAxes,
        )

    def bargauge(self, ax: Any, panel: dict[str, Any], lines: list[Line]) -> None:
        defaults = panel["fieldConfig"]["defaults"]
        unit = defaults.get("unit", "short")
        per_ref = _ref_steps(panel)
        bars = [(ln, ln.values[-1]) for ln in lines if ln.values]
        if not bars:
            _no_data(ax, panel)
            return
        top = defaults.get("max") or max(max(v for _, v in bars), 1e-12) * 1.1
        for i, (line, value) in enumerate(bars):
            steps = per_ref.get(line.ref, defaults["thresholds"]["steps"])
            y = len(bars) - 1 - i
            ax.barh(y, top, color=BORDER, height=0.6)
            ax.barh(y, min(max(value, 0), top), color=_step_color(steps, value), height=0.6)
            ax.text(-0.01 * top, y, line.name, color=TEXT, fontsize=7, ha="right", va="center")
            ax.text(
                top * 1.01,
                y,
                format_value(value, unit),
                color=_step_color(steps, value),
                fontsize=8,
                ha="left",
                va="center",
                weight="bold",
            )
        ax.set_xlim(0, top)
        ax.set_ylim(-0.6, len(bars) - 0.4)
        ax.set_axis_off()

    def table(self, ax: Any, panel: dict[str, Any], lines: list[Line]) -> None:
        ax.set_axis_off()
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        rows = [(ln.name, format_value(ln.values[-1], unit)) for ln in lines if ln.values]
        ax.text(
            0.01,
            0.95,
            "Series",
            color=MUTED,
            fontsize=7.5,
            weight="bold",
            va="top",
            transform=ax.transAxes,
        )
        ax.text(
            0.99,
            0.95,
            "Value",
            color=MUTED,
            fontsize=7.5,
            weight="bold",
            va="top",
            ha="right",
            transform=ax.transAxes,
        )
        for i, (name, value) in enumerate(rows[:14]):
            y = 0.95 - (i + 1) * 0.085
            ax.text(0.01, y, name, color=TEXT, fontsize=7.5, va="top", transform=ax.transAxes)
            ax.text(
                0.99,
                y,
                value,
                color=TEXT,
                fontsize=7.5,
                va="top",
                ha="right",
                transform=ax.transAxes,
            )


def _datetime(t: float) -> Any:
    import datetime

    return datetime.datetime.fromtimestamp(t)


def _formatter(unit: str) -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: format_value(v, unit))


def _width_px(ax: Any) -> float:
    return float(ax.get_position().width * ax.figure.get_figwidth() * ax.figure.dpi)


def _selectors(expr: str) -> list[tuple[str, str]]:
    """``(metric name, selector)`` for each series selector of ``expr``, in order, once."""
    text = _NOISE.sub(lambda m: m.group("matchers") or " ", expr)
    found: dict[str, str] = {}
    for match in _SELECTOR.finditer(text):
        name, matchers, call = match.groups()
        if not call and name not in _NOT_METRICS:
            found.setdefault(name + (matchers or ""), name)
    return [(name, selector) for selector, name in found.items()]


def _height_px(ax: Any) -> float:
    return float(ax.get_position().height * ax.figure.get_figheight() * ax.figure.dpi)


NOTE_PT = 7
NOTE_LINE_PX = NOTE_PT * DPI / 72 * 1.2  # matplotlib's line spacing
NO_DATA_Y, NOTE_TOP_Y = 0.58, 0.38  # where "No data" and the note below it sit, at most


def _no_data(ax: Any, panel: dict[str, Any], reason: str | None = None) -> None:
    """Draw "No data", and below it ``reason`` (why, where the window shows it) and the
    panel's own note on when it has data ("Data only ..."), wrapped to the panel."""
    ax.set_axis_off()
    note = re.search(r"Data only[^.]*\.", panel.get("description", ""))
    said = [text for text in (reason, note.group(0) if note else None) if text]
    # Wrapped to the panel by hand: matplotlib's wrap=True wraps at the figure's edge, so a
    # note in a narrow panel ran into its neighbours. 7 pt text averages ~0.6 em.
    per_line = max(20, int(_width_px(ax) / (NOTE_PT * DPI / 72 * 0.6)))
    lines = [line for text in said for line in textwrap.wrap(text, per_line)]
    # A text too long for the space below "No data" lifts both, as far as the top allows,
    # and what still does not fit is cut: nothing is drawn over the next panel.
    height = _height_px(ax)
    highest = 1 - 12 / height - NO_DATA_Y  # "No data" (12 pt) stays below the top
    room = (NOTE_TOP_Y + max(0.0, highest)) * height - 4
    if len(lines) * NOTE_LINE_PX > room:
        lines = lines[: max(1, int(room / NOTE_LINE_PX))]
        lines[-1] = lines[-1][: per_line - 3].rstrip() + "..."
    lift = min(max(0.0, highest), max(0.0, (len(lines) * NOTE_LINE_PX + 4) / height - NOTE_TOP_Y))
    ax.text(
        0.5,
        NO_DATA_Y + lift,
        "No data",
        color=MUTED,
        fontsize=12,
        ha="center",
        va="center",
        transform=ax.transAxes,
    )
    if lines:
        ax.text(
            0.5,
            NOTE_TOP_Y + lift,
            "\n".join(lines),
            color=MUTED,
            fontsize=NOTE_PT,
            ha="center",
            va="top",
            transform=ax.transAxes,
        )


def render_dashboard(
    dashboard: DashboardSpec | Mapping[str, Any],
    prometheus_url: str,
    start: float,
    end: float,
    out_png: str | Path,
    variables: Mapping[str, str] | None = None,
) -> Path:
    """Render ``dashboard`` (a spec, or Grafana JSON) over ``[start, end]`` (Unix seconds).

    ``variables`` fills ``$job``, ``$instance``, ... (default ``.*``, Grafana's "All") and
    ``$__rate_interval`` (default ``1m``). Returns the PNG's path.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    if isinstance(dashboard, DashboardSpec):
        from inferwatch.dashboards.grafana import to_json

        data: Mapping[str, Any] = to_json(dashboard)
    else:
        data = dashboard
    renderer = _Renderer(Prometheus(prometheus_url), start, end, variables or {})
    panels = data["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width_px, height_px = 24 * COL_PX, rows * ROW_PX + HEADER_PX
    fig = plt.figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor=BG)
    fig.text(
        0.008,
        1 - 22 / height_px,
        data["title"],
        color=TEXT,
        fontsize=13,
        weight="bold",
        va="center",
    )
    span = f"{_datetime(start):%Y-%m-%d %H:%M} to {_datetime(end):%H:%M}"
    picked = ", ".join(f"{k}={v}" for k, v in sorted((variables or {}).items())) or "all"
    fig.text(
        0.992,
        1 - 22 / height_px,
        f"{span}   {picked}",
        color=MUTED,
        fontsize=8,
        ha="right",
        va="center",
    )
    for panel in panels:
        _draw_panel(fig, renderer, panel, width_px, height_px)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=BG, dpi=DPI)
    plt.close(fig)
    return out


def _draw_panel(fig: Any, renderer: _Renderer, panel: dict[str, Any], w_px: int, h_px: int):
    from matplotlib.patches import FancyBboxPatch

    pos = panel["gridPos"]
    pad = 4
    left = (pos["x"] * COL_PX + pad) / w_px
    width = (pos["w"] * COL_PX - 2 * pad) / w_px
    top_px = HEADER_PX + pos["y"] * ROW_PX + pad
    height = (pos["h"] * ROW_PX - 2 * pad) / h_px
    bottom = 1 - top_px / h_px - height
    frame = fig.add_axes((left, bottom, width, height))
    frame.set_axis_off()
    frame.add_patch(
        FancyBboxPatch(
            (0, 0),
            1,
            1,
            boxstyle="round,pad=0,rounding_size=0.01",
            facecolor=PANEL_BG,
            edgecolor=BORDER,
            lw=0.8,
            transform=frame.transAxes,
        )
    )
    title_h = 24 / h_px
    unit = panel["fieldConfig"]["defaults"].get("unit", "")
    frame.text(
        0.012,
        1 - (12 / h_px) / height,
        panel["title"],
        color=TEXT,
        fontsize=8.5,
        weight="bold",
        va="center",
        transform=frame.transAxes,
    )
    frame.text(
        0.988,
        1 - (12 / h_px) / height,
        unit,
        color=MUTED,
        fontsize=7,
        ha="right",
        va="center",
        transform=frame.transAxes,
    )
    kind = panel["type"]
    inner_left = left + (80 / w_px if kind == "timeseries" else 0.01 * width)
    inner_left += 0.3 * width if kind == "bargauge" else 0
    inner_right = left + width * (0.9 if kind == "bargauge" else 0.985)
    inner = fig.add_axes(
        (
            inner_left,
            bottom + 0.04 * height + (14 / h_px if kind == "timeseries" else 0),
            inner_right - inner_left,
            height - title_h - 0.06 * height - (14 / h_px if kind == "timeseries" else 0),
        )
    )
    inner.set_facecolor(PANEL_BG)
    lines, error = renderer.fetch(panel)
    if error:
        inner.set_axis_off()
        inner.text(
            0.5,
            0.5,
            error[:120],
            color="#F2495C",
            fontsize=7,
            ha="center",
            va="center",
            wrap=True,
            transform=inner.transAxes,
        )
        return
    if not lines or not any(ln.values for ln in lines):
        _no_data(inner, panel, renderer.why_empty(panel))
        return
    getattr(renderer, kind)(inner, panel, lines)
