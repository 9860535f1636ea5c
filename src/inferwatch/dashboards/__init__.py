"""Grafana dashboards as code: one module per dashboard, built from the alerts' thresholds.

``build_all()`` returns every :class:`~inferwatch.dashboards.model.DashboardSpec` by name;
``files()`` renders them into the JSON files under ``dashboards/`` that ``inferwatch
generate`` writes and checks. Needs the ``dashboards`` extra (grafanalib) and ``alerts``
(PyYAML, for the thresholds file).
"""

from __future__ import annotations

from collections.abc import Callable

from inferwatch.alerts.thresholds import Thresholds
from inferwatch.dashboards import models, overview, pools, resources, streaming
from inferwatch.dashboards.model import DashboardSpec

OUT_DIR = "dashboards"

BUILDERS: dict[str, Callable[[Thresholds], DashboardSpec]] = {
    "overview": overview.build,
    "models": models.build,
    "resources": resources.build,
    "pools": pools.build,
    "streaming": streaming.build,
}


def build_all(thresholds: Thresholds) -> dict[str, DashboardSpec]:
    return {name: build(thresholds) for name, build in BUILDERS.items()}


def files(thresholds: Thresholds) -> dict[str, str]:
    """Relative path -> file text, for ``inferwatch generate``."""
    from inferwatch.dashboards.grafana import dumps

    return {f"{OUT_DIR}/{name}.json": dumps(spec) for name, spec in build_all(thresholds).items()}


__all__ = ["BUILDERS", "OUT_DIR", "DashboardSpec", "build_all", "files"]
