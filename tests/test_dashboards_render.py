"""The renderer's empty panels say why they are empty, where the window shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inferwatch.dashboards import render
from inferwatch.dashboards.render import _no_data, _Renderer, _selectors
from inferwatch.stack.prometheus_api import QueryError

START, END = 1_700_000_000.0, 1_700_000_600.0  # a 10-minute window
GPU_NOTE = "Data only on a host with an NVIDIA GPU (the exporter's gpu collector)."


class FakePrometheus:
    """Answers instant queries from ``present`` (the expressions with a result); records
    every query. A range query has no data."""

    def __init__(self, present: set[str] = frozenset(), failing: bool = False) -> None:
        self.present, self.failing = present, failing
        self.asked: list[str] = []

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        assert at == END
        self.asked.append(expr)
        if self.failing:
            raise QueryError(f"{expr!r}: unreachable")
        return [{"metric": {}, "value": [END, "1"]}] if expr in self.present else []

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Any]:
        return []


def window(selector: str) -> str:
    return f"count(last_over_time({selector}[600s]))"


POWER = 'inferwatch_gpu_power_watts{job=~"demo", instance=~".*"}'
LIMIT = 'inferwatch_gpu_power_limit_watts{job=~"demo", instance=~".*"}'
PANEL = {
    "title": "GPU power",
    "type": "timeseries",
    "description": f"Power draw against the limit. {GPU_NOTE}",
    "gridPos": {"x": 0, "y": 0, "w": 8, "h": 6},
    "fieldConfig": {"defaults": {"unit": "watt"}},
    "targets": [
        {"refId": "A", "expr": 'sum by (gpu) (inferwatch_gpu_power_watts{job=~"$job", '
         'instance=~"$instance"})'},
        {"refId": "B", "expr": 'max by (gpu) (inferwatch_gpu_power_limit_watts{job=~"$job", '
         'instance=~"$instance"})'},
    ],
}  # fmt: skip


def test_selectors_are_the_series_an_expression_reads() -> None:
    expr = (
        'sum by (job, le) (rate(x_bucket{a="b{c} by (q) [1m]", d=~"e|f"}[5m])) '
        "/ on (job) group_left (route) y and vector(1) > 0.5 "
        'or max without (instance) (z offset 5m) + label_replace(w, "dst", "$1", "src", "(.*)")'
        " + job:requests:rate5m"
    )
    assert _selectors(expr) == [
        ("x_bucket", 'x_bucket{a="b{c} by (q) [1m]", d=~"e|f"}'),
        ("y", "y"),
        ("z", "z"),
        ("w", "w"),
        ("job:requests:rate5m", "job:requests:rate5m"),
    ]


def test_a_job_that_scraped_nothing_is_named() -> None:
    prometheus = FakePrometheus()
    renderer = _Renderer(prometheus, START, END, {"job": "demo"})  # type: ignore[arg-type]
    assert renderer.why_empty(PANEL) == 'Nothing scraped for job=~"demo" in this window.'
    assert renderer.why_empty(PANEL) == 'Nothing scraped for job=~"demo" in this window.'
    assert prometheus.asked == [window('up{job=~"demo"}')]  # asked once per render


def test_the_absent_series_are_named() -> None:
    prometheus = FakePrometheus({window('up{job=~"demo"}'), window(LIMIT)})
    renderer = _Renderer(prometheus, START, END, {"job": "demo"})  # type: ignore[arg-type]
    assert renderer.why_empty(PANEL) == "No series of inferwatch_gpu_power_watts in this window."
    assert prometheus.asked == [window('up{job=~"demo"}'), window(POWER), window(LIMIT)]


def test_without_a_job_any_scrape_counts() -> None:
    prometheus = FakePrometheus()
    renderer = _Renderer(prometheus, START, END, {})  # type: ignore[arg-type]
    assert renderer.why_empty(PANEL) == "Nothing scraped in this window."
    assert prometheus.asked == [window("up")]


def test_no_reason_when_every_series_is_there_or_prometheus_fails() -> None:
    present = {window('up{job=~"demo"}'), window(POWER), window(LIMIT)}
    renderer = _Renderer(FakePrometheus(present), START, END, {"job": "demo"})  # type: ignore[arg-type]
    assert renderer.why_empty(PANEL) is None
    failing = _Renderer(FakePrometheus(failing=True), START, END, {"job": "demo"})  # type: ignore[arg-type]
    assert failing.why_empty(PANEL) is None


def _axes(width: float, height: float) -> tuple[Any, Any]:
    """An axes of ``width`` x ``height`` px, centred on a dashboard-wide figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15.36, 4), dpi=100)
    w, h = width / 1536, height / 400
    return fig, fig.add_axes(((1 - w) / 2, (1 - h) / 2, w, h))


def _texts(fig: Any, ax: Any) -> dict[str, Any]:
    renderer = fig.canvas.get_renderer()
    panel = ax.get_window_extent(renderer)
    texts = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    for text, box in texts.items():
        assert panel.x0 <= box.x0 and box.x1 <= panel.x1, (text, box, panel)
        assert panel.y0 <= box.y0 and box.y1 <= panel.y1, (text, box, panel)
    return texts


def test_the_reason_and_the_note_stay_inside_a_small_panel() -> None:
    reason = "No series of inferwatch_gpu_power_watts in this window."
    fig, ax = _axes(490, 120)
    _no_data(ax, PANEL, reason)
    texts = _texts(fig, ax)
    assert [t.replace("\n", " ") for t in texts] == ["No data", f"{reason} {GPU_NOTE}"]


def test_what_does_not_fit_is_cut() -> None:
    reason = "No series of " + ", ".join(f"metric_{i}_total" for i in range(40)) + "."
    fig, ax = _axes(240, 80)
    _no_data(ax, PANEL, reason)
    texts = _texts(fig, ax)
    # Four 7 pt lines fit below "No data" in 80 px; the rest, and the note, are cut.
    assert list(texts) == [
        "No data",
        "No series of metric_0_total,\nmetric_1_total, metric_2_total,\n"
        "metric_3_total, metric_4_total,\nmetric_5_total, metric_6_total,...",
    ]


def test_a_rendered_empty_panel_gets_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prometheus = FakePrometheus({window('up{job=~"demo"}'), window(LIMIT)})
    monkeypatch.setattr(render, "Prometheus", lambda url: prometheus)
    drawn: list[str | None] = []

    def no_data(ax: Any, panel: dict[str, Any], reason: str | None = None) -> None:
        drawn.append(reason)
        _no_data(ax, panel, reason)

    monkeypatch.setattr(render, "_no_data", no_data)
    dashboard = {"title": "GPU", "panels": [PANEL]}
    out = render.render_dashboard(
        dashboard, "http://p", START, END, tmp_path / "gpu.png", {"job": "demo"}
    )
    assert out.read_bytes().startswith(b"\x89PNG")
    assert drawn == ["No series of inferwatch_gpu_power_watts in this window."]
