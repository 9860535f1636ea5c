"""Turn a :class:`DashboardSpec` into grafanalib objects and then into Grafana JSON.

grafanalib 0.7 still writes some Grafana 6/7 leftovers (schema version 12, bar gauges'
``fieldOptions``, Graphite keys on targets, threshold steps with ``"null"`` strings, no
datasource on targets). The panel JSON is therefore finished here: explicit datasource
references on panels and targets, ``refId`` per target, current options for each panel type
and a pinned ``schemaVersion``, so the files import into Grafana 10/11 unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from inferwatch.dashboards.model import (
    DATASOURCE,
    DashboardSpec,
    Panel,
    Placed,
    Step,
    Variable,
    ref_id,
)

SCHEMA_VERSION = 39
REFRESH = "30s"
TIME_FROM = "now-1h"
_TARGET_KEYS = ("datasource", "editorMode", "expr", "instant", "legendFormat", "range", "refId")
_PANEL_DROP = (
    "height",
    "span",
    "minSpan",
    "error",
    "cacheTimeout",
    "repeat",
    "repeatDirection",
    "maxPerRow",
    "columns",
    "fontSize",
    "mappings",
    "color",
    "timeFrom",
    "timeShift",
    "interval",
    "hideTimeOverride",
    "transparent",
    "thresholds",
    "thresholdType",
)


def _steps(steps: tuple[Step, ...]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": s.color, "value": s.value} for s in steps]}


def _targets(panel: Panel) -> list[g.Target]:
    table = panel.kind == "table"
    return [
        g.Target(
            expr=q.expr,
            legendFormat=q.legend,
            refId=ref_id(i),
            instant=q.instant or table,
            format=g.TABLE_TARGET_FORMAT if table else g.TIME_SERIES_TARGET_FORMAT,
            datasource=DATASOURCE,
        )
        for i, q in enumerate(panel.queries)
    ]


def _field_defaults(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": _steps(panel.steps)}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    return defaults


def _overrides(panel: Panel) -> list[dict[str, Any]]:
    return [
        {
            "matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": "thresholds", "value": _steps(steps)}],
        }
        for ref, steps in panel.query_steps
    ]


def to_grafanalib(placed: Placed) -> g.Panel:
    panel = placed.panel
    common: dict[str, Any] = {
        "id": placed.id,
        "title": panel.title,
        "description": panel.full_description(),
        "dataSource": DATASOURCE,
        "targets": _targets(panel),
        "gridPos": g.GridPos(h=panel.height, w=panel.width, x=placed.x, y=placed.y),
    }
    field_config = {"defaults": _field_defaults(panel), "overrides": _overrides(panel)}
    if panel.kind == "timeseries":
        has_levels = len(panel.steps) > 1
        return g.TimeSeries(
            **common,
            unit=panel.unit,
            fillOpacity=10,
            legendCalcs=["lastNotNull", "max"],
            legendDisplayMode="table" if len(panel.queries) > 2 else "list",
            tooltipMode="multi",
            thresholdsStyleMode="dashed" if has_levels else "off",
            extraJson={"fieldConfig": field_config},
        )
    if panel.kind == "stat":
        return g.Stat(
            **common,
            format=panel.unit,
            reduceCalc="lastNotNull",
            colorMode="value",
            graphMode="area",
            noValue="No data",
            extraJson={"fieldConfig": field_config},
        )
    if panel.kind == "bargauge":
        return g.BarGauge(
            **common,
            format=panel.unit,
            displayMode=g.GAUGE_DISPLAY_MODE_GRADIENT,
            extraJson={
                "fieldConfig": field_config,
                "options": {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "showUnfilled": True,
                    "valueMode": "color",
                    "namePlacement": "auto",
                    "sizing": "auto",
                },
            },
        )
    return g.Table(
        **common,
        unit=panel.unit,
        extraJson={
            "fieldConfig": field_config,
            # Instant table results carry a Time column that says nothing here.
            "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
        },
    )


def _variable(var: Variable) -> g.Template:
    if var.kind == "datasource":
        return g.Template(
            name=var.name,
            label=var.label,
            query="prometheus",
            type="datasource",
            default="inferwatch-prometheus",
        )
    return g.Template(
        name=var.name,
        label=var.label,
        query=var.query,
        dataSource=DATASOURCE,
        includeAll=var.include_all,
        multi=True,
        allValue=".*",
        default="$__all",
        refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
    )


def to_dashboard(spec: DashboardSpec) -> g.Dashboard:
    return g.Dashboard(
        title=spec.title,
        uid=spec.uid,
        description=spec.description,
        tags=list(spec.tags),
        panels=[to_grafanalib(p) for p in spec.placed()],
        templating=g.Templating([_variable(v) for v in spec.variables]),
        links=[
            g.DashboardLink(
                title="inferwatch",
                type="dashboards",
                tags=["inferwatch"],
                asDropdown=True,
                includeVars=True,
                keepTime=True,
            )
        ],
        schemaVersion=SCHEMA_VERSION,
        refresh=REFRESH,
        time=g.Time(TIME_FROM, "now"),
        timezone="browser",
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
    )


def _finish_panel(panel: dict[str, Any]) -> dict[str, Any]:
    for key in _PANEL_DROP:
        panel.pop(key, None)
    panel["targets"] = [
        {
            **{k: t[k] for k in _TARGET_KEYS if k in t},
            "editorMode": "code",
            "range": not t["instant"],
        }
        for t in panel["targets"]
    ]
    panel.get("options", {}).pop("fieldOptions", None)  # pre-Grafana-7 bar gauge options
    panel["fieldConfig"]["defaults"] = {
        k: v for k, v in panel["fieldConfig"]["defaults"].items() if v is not None
    }
    return {k: v for k, v in panel.items() if v is not None}


def to_json(spec: DashboardSpec) -> dict[str, Any]:
    """The dashboard as Grafana imports it (plain JSON types only)."""
    data: dict[str, Any] = json.loads(json.dumps(to_dashboard(spec), cls=DashboardEncoder))
    data["panels"] = [_finish_panel(p) for p in data["panels"]]
    for key in ("rows", "hideControls", "sharedCrosshair", "style", "gnetId", "id"):
        data.pop(key, None)
    for var in data["templating"]["list"]:
        if var["type"] == "datasource":
            var["current"] = {
                "selected": True,
                "text": "Prometheus",
                "value": "inferwatch-prometheus",
            }
            var["datasource"] = None
    return data


def dumps(spec: DashboardSpec) -> str:
    """Deterministic text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(to_json(spec), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
