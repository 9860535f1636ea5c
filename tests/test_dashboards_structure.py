"""The dashboards' structure: grid, ids, units, descriptions, datasources, panel types,
metric names and thresholds, checked on the generated Grafana JSON."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from inferwatch import catalogue
from inferwatch.alerts import recording
from inferwatch.alerts.thresholds import load_thresholds
from inferwatch.dashboards import build_all, grafana
from inferwatch.dashboards import thresholds as adapter
from inferwatch.dashboards.model import DATASOURCE, GRID_COLUMNS, Needs, ref_id
from inferwatch.demo.faults import Faults

THRESHOLDS = load_thresholds()
SPECS = build_all(THRESHOLDS)
JSON = {name: grafana.to_json(spec) for name, spec in SPECS.items()}
CURRENT_TYPES = {"timeseries", "stat", "bargauge", "table"}
ANGULAR = {"graph", "singlestat", "table-old", "grafana-piechart-panel", "grafana-worldmap-panel"}
UIDS = {
    "overview": "inferwatch-overview",
    "models": "inferwatch-models",
    "resources": "inferwatch-resources",
    "pools": "inferwatch-pools",
    "streaming": "inferwatch-streaming",
}
# Words in a PromQL expression that are not metric names.
PROMQL_WORDS = {
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "rate",
    "increase",
    "irate",
    "histogram_quantile",
    "predict_linear",
    "vector",
    "scalar",
    "abs",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "label_values",
    "bool",
    "offset",
    "topk",
    "bottomk",
    "clamp_min",
    "sort_desc",
}
BUILTIN = {"up", "ALERTS"}  # written by Prometheus itself


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, data in JSON.items():
        for panel in data["panels"]:
            yield name, panel


def metric_names(expr: str) -> set[str]:
    """Rough PromQL lexing: drop strings, label matchers/groupings and durations; what is
    left that looks like an identifier and is not a function or keyword is a metric."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text))
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"e\d*", n)}


def known_names() -> set[str]:
    # The exporter's metrics are in the catalogue too, read from its collectors' declarations.
    names = set(BUILTIN)
    names |= set(recording.record_names(THRESHOLDS))
    _, grouped = catalogue.build()
    for _, infos in grouped:
        for info in infos:
            names.add(info.name)
            if info.type == "histogram":
                names |= {f"{info.name}_bucket", f"{info.name}_sum", f"{info.name}_count"}
    return names


def test_five_dashboards_with_stable_uids_and_links() -> None:
    assert {name: data["uid"] for name, data in JSON.items()} == UIDS
    for data in JSON.values():
        assert data["schemaVersion"] >= 39
        assert [link["tags"] for link in data["links"]] == [["inferwatch"]]
        assert "inferwatch" in data["tags"]


def test_template_variables() -> None:
    for name, data in JSON.items():
        variables = {v["name"]: v for v in data["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for var in ("job", "instance"):
            assert variables[var]["datasource"] == DATASOURCE, (name, var)
            assert variables[var]["allValue"] == ".*"
    assert "route" in {v["name"] for v in JSON["overview"]["templating"]["list"]}
    assert "model" in {v["name"] for v in JSON["models"]["templating"]["list"]}


def test_unique_ids_and_grid_without_overlap() -> None:
    for name, data in JSON.items():
        ids = [p["id"] for p in data["panels"]]
        assert len(ids) == len(set(ids)), name
        cells: dict[tuple[int, int], str] = {}
        for panel in data["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= GRID_COLUMNS
            for x in range(pos["x"], pos["x"] + pos["w"]):
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{name}: {panel['title']} overlaps {cells[x, y]}"
                    cells[x, y] = panel["title"]


@pytest.mark.parametrize(
    "name,panel", list(panels()), ids=lambda v: v if isinstance(v, str) else v["title"]
)
def test_panel_is_current_explicit_and_explained(name: str, panel: dict[str, Any]) -> None:
    assert panel["type"] in CURRENT_TYPES and panel["type"] not in ANGULAR
    assert panel["fieldConfig"]["defaults"]["unit"], "every panel has a unit"
    assert len(panel["description"]) > 20, "every panel says what it shows"
    assert panel["datasource"] == DATASOURCE
    assert panel["targets"], "every panel queries something"
    for i, target in enumerate(panel["targets"]):
        assert target["datasource"] == DATASOURCE
        assert target["refId"] == ref_id(i)
        assert "$__interval" not in target["expr"], "use $__rate_interval for rates"
        assert "[5m]" not in target["expr"] or target["expr"].count("rate(") == 0
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0]["value"] is None and all(s["value"] is not None for s in steps[1:])
    assert [s["value"] for s in steps[1:]] == sorted(s["value"] for s in steps[1:])


def test_every_metric_is_exported_or_recorded() -> None:
    known = known_names()
    unknown = {
        (name, panel["title"], metric)
        for name, panel in panels()
        for target in panel["targets"]
        for metric in metric_names(target["expr"])
        if metric not in known
    }
    assert not unknown


def test_metric_name_lexer() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (http_route, le) (rate(x_bucket{job=~"$job", '
        'a="sum"}[$__rate_interval]))) / on (job) job:y:ratio_rate5m or vector(0) * 1e3'
    )
    assert metric_names(expr) == {"x_bucket", "job:y:ratio_rate5m"}


def test_panels_use_recording_rules_where_alerts_do() -> None:
    exprs = " ".join(t["expr"] for _, p in panels() for t in p["targets"])
    for record in (
        "job_route:http_server_requests:rate5m",
        "job_route:http_server_request_errors:ratio_rate5m",
        "job_route:http_server_request_duration_seconds:p95_5m",
        "job_route:websocket_server_connection_success:ratio_rate5m",
        "instance:inferwatch_host_cpu_usage:ratio_rate5m",
        "instance:inferwatch_host_memory_usage:ratio",
        "gpu:inferwatch_gpu_memory_usage:ratio",
        "job_pool:db_client_connection_usage:ratio",
        "job_cache:inferwatch_cache_hit:ratio_rate5m",
        "job_model:inferwatch_model_load_duration_seconds:p95_1h",
    ):
        assert record in exprs


def _levels_by_color(steps: list[dict[str, Any]]) -> dict[str, float | None]:
    return {s["color"]: s["value"] for s in steps}


def test_threshold_values_come_from_the_thresholds_file() -> None:
    """Each panel that names an alert's recorded series colours at that alert's levels."""
    from inferwatch.alerts.signals import SIGNALS

    checked = 0
    for _, panel in panels():
        exprs = " ".join(t["expr"] for t in panel["targets"])
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        if len(steps) < 2:
            continue
        signal = next(
            (
                s
                for s in SIGNALS
                if s.kind != "state"
                and s.series in exprs
                and (not s.matchers or s.matchers in exprs)
            ),
            None,
        )
        if signal is None:
            continue  # SLO objective and burn-rate factors: checked below
        levels = THRESHOLDS.signals[signal.key]
        colors = _levels_by_color(steps)
        for color, level in ((adapter.AMBER, levels.warning), (adapter.RED, levels.critical)):
            if signal.direction == "below" and color == adapter.AMBER:
                level = levels.critical  # below: amber starts at the critical level
            elif signal.direction == "below":
                continue
            if level is None:
                continue
            expected = float(level)
            if signal.kind == "count":  # strictly above: the next float
                assert colors[color] > expected and colors[color] - expected < 1e-9
            else:
                assert colors[color] == expected, (panel["title"], color)
            checked += 1
        if signal.direction == "below":
            assert colors[adapter.GREEN] == float(levels.warning)
    assert checked >= 15


def test_slo_panels_use_the_objective_and_burn_factors() -> None:
    overview = {p["title"]: p for p in JSON["overview"]["panels"]}
    availability = next(p for t, p in overview.items() if t.startswith("Availability"))
    steps = availability["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[1]["value"] == float(THRESHOLDS.slo.availability)
    burn = overview["SLO burn rate"]
    factors = sorted(
        o["properties"][0]["value"]["steps"][1]["value"] for o in burn["fieldConfig"]["overrides"]
    )
    assert factors == sorted([float(b.factor) for b in THRESHOLDS.slo.burn_rates] * 2)


def test_thresholds_follow_an_overlay() -> None:
    overlay = load_thresholds("signals:\n  api_error_rate: {warning: 2%, critical: 9%}\n")
    spec = build_all(overlay)["overview"]
    ratio = next(p for p in spec.panels() if p.title == "Error ratio")
    assert [s.value for s in ratio.steps] == [None, 0.02, 0.09]


def test_needs_are_declared_and_described() -> None:
    for spec in SPECS.values():
        for panel in spec.panels():
            if panel.needs is None:
                continue
            assert isinstance(panel.needs, Needs)
            assert panel.needs.describe() in panel.full_description()
            if panel.needs.kind == "fault":
                assert panel.needs.what in Faults.model_fields, "a fault the demo knows"
            if panel.needs.kind == "gpu":
                assert "GPU" in panel.description
