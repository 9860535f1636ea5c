"""The dashboard definition model: panels, queries, variables and why a panel may be empty.

Dashboards are described with these small frozen dataclasses and turned into grafanalib
objects (and Grafana JSON) by :mod:`inferwatch.dashboards.grafana`. Keeping a model of our
own lets the tests and the PNG renderer read the same queries, units and thresholds without
digging through grafanalib's JSON, and carries what Grafana has no field for: the condition
under which a panel has data at all.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Literal

PanelKind = Literal["timeseries", "stat", "bargauge", "table"]
GRID_COLUMNS = 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def ref_id(index: int) -> str:
    """Grafana's query letters: the first query of a panel is A."""
    return string.ascii_uppercase[index]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False  # tables and "current value" panels read one evaluation


@dataclass(frozen=True)
class Step:
    """A Grafana threshold step: ``color`` applies from ``value`` upwards (None: the base)."""

    color: str
    value: float | None


@dataclass(frozen=True)
class Needs:
    """Why a panel can be empty on a healthy system, and what makes it show data.

    ``fault``: only while the demo's fault ``what`` is switched on (set to ``setting``);
    ``gpu``: only on a host with an NVIDIA GPU. The live dashboard test feeds these panels
    from a simulated NVML (no GPU there), so they are verified against the simulation; a
    check on real hardware is still pending.
    """

    kind: Literal["fault", "gpu"]
    what: str
    setting: float | None = None

    def describe(self) -> str:
        if self.kind == "fault":
            return f"Data only while something fails (demo fault `{self.what}`)."
        return (
            "Data only on a host with an NVIDIA GPU (the exporter's gpu collector); checked "
            "against a simulated GPU, not yet on real hardware."
        )


@dataclass(frozen=True)
class Panel:
    kind: PanelKind
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    width: int = 12
    height: int = 8
    steps: tuple[Step, ...] = ()  # colours, and threshold lines on time series
    # Per-query thresholds (refId -> steps), for bars that each have their own limit.
    query_steps: tuple[tuple[str, tuple[Step, ...]], ...] = ()
    needs: Needs | None = None
    min: float | None = None
    max: float | None = None

    def full_description(self) -> str:
        return f"{self.description} {self.needs.describe()}" if self.needs else self.description


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str  # a label_values(...) query; "" for the datasource variable
    kind: Literal["datasource", "query"] = "query"
    include_all: bool = True


@dataclass(frozen=True)
class Placed:
    id: int
    x: int
    y: int
    panel: Panel


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[tuple[Panel, ...], ...]  # laid out top to bottom, each row left to right
    tags: tuple[str, ...] = ("inferwatch",)
    links: tuple[str, ...] = field(default=())  # uids of related dashboards

    def placed(self) -> list[Placed]:
        """Panels with ids and grid positions: rows stacked, each as tall as its tallest."""
        result: list[Placed] = []
        y = 0
        for row in self.rows:
            x = 0
            for panel in row:
                if x + panel.width > GRID_COLUMNS:
                    raise ValueError(f"{self.uid}: row with {panel.title!r} is wider than 24")
                result.append(Placed(len(result) + 1, x, y, panel))
                x += panel.width
            y += max(p.height for p in row)
        return result

    def panels(self) -> list[Panel]:
        return [p.panel for p in self.placed()]
